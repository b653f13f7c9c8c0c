/// The names an operator, a client and the code share for the sentence encoder's settings:
/// parsed once from config or wire into these types, never back into strings and never with a
/// silent default. A leaf module, so the config, the wire protocol, the encoder and the engine
/// agree without depending on each other.

/// How to embed a text longer than the model's 256-token window.
public enum LongTextPolicy: String, Sendable, CaseIterable, Codable {
    /// Keep the first 254 word pieces (the model's own behaviour).
    case head
    /// Keep the last 254 word pieces: the end of a prompt is usually the question.
    case tail
    /// Embed overlapping 256-token windows (stride 127 pieces), average, normalise.
    case windows
}

/// Which library runs the encoder's matrix products: the linear layers (the four products per
/// layer that take most of its time) and attention's two.
public enum LinearKernel: String, Sendable, CaseIterable {
    /// oneDNN's matmul with the weights packed once at load (the default).
    case onednn
    /// OpenBLAS's sgemm, which packs its weight operand again on every call.
    case openblas

    /// Why this kernel cannot run `precision`, or nil if it can: OpenBLAS runs fp32 only.
    public func refusal(of precision: EncoderPrecision) -> String? {
        self == .openblas && precision != .fp32 ? "precision \(precision.rawValue) needs kernel onednn; openblas runs fp32 only" : nil
    }
}

/// The arithmetic of the encoder's linear layers. Everything else (attention, LayerNorm, GELU,
/// pooling) stays in fp32.
public enum EncoderPrecision: String, Sendable, CaseIterable {
    case fp32
    /// Weights quantized per output column at load, activations per row on the fly (oneDNN u8·s8).
    case int8
    /// bfloat16 operands, fp32 accumulation: CPUs with AVX512-BF16 or AMX only.
    case bf16
}

/// A config's `precision`: one precision, or `auto`, the fastest that passes the accuracy gate.
public enum PrecisionSetting: Sendable, Hashable {
    case fixed(EncoderPrecision)
    case auto

    public init?(rawValue: String) {
        if rawValue == "auto" {
            self = .auto
        } else if let precision = EncoderPrecision(rawValue: rawValue) {
            self = .fixed(precision)
        } else {
            return nil
        }
    }

    public var rawValue: String {
        switch self {
        case .fixed(let precision): precision.rawValue
        case .auto: "auto"
        }
    }

    public static let names = EncoderPrecision.allCases.map(\.rawValue) + ["auto"]
}
