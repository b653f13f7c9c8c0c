/// Whether this routerd was built with the gateway (the package trait `Gateway`).
public enum GatewayBuild {
    #if Gateway
        public static let isAvailable = true
    #else
        public static let isAvailable = false
    #endif
}
