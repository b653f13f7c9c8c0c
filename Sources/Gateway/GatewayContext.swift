#if Gateway
    import Hummingbird
    import NIOCore

    /// A request's context: Hummingbird's, with the connection, whose peer credentials the
    /// Unix-socket listener checks.
    struct GatewayContext: RequestContext {
        var coreContext: CoreRequestContextStorage
        let channel: any Channel

        init(source: ApplicationRequestContextSource) {
            coreContext = .init(source: source)
            channel = source.channel
        }

        /// The gateway reads bodies with its own limit (`gateway.max_body_bytes`), which reloads.
        var maxUploadSize: Int { Int.max }
    }
#endif
