import ArgumentParser
import RouterVocabulary

// The shared vocabulary as command-line values: parsed by name, shown by name in --help.

extension LongTextPolicy: ExpressibleByArgument {}
extension LinearKernel: ExpressibleByArgument {}
extension EncoderPrecision: ExpressibleByArgument {}
extension PairwiseResult: ExpressibleByArgument {}

extension PrecisionSetting: ExpressibleByArgument {
    public init?(argument: String) { self.init(rawValue: argument) }
    public static var allValueStrings: [String] { names }
    /// `--help` shows `fp32` or `auto`, not the enum case.
    public var defaultValueDescription: String { rawValue }
}
