/// Reading a router's policy and candidates.
extension ConfigLoader {
    /// The router's policy: `threshold:`, `strong_fraction:` or a `policy:` mapping of one kind.
    static func readPolicy(_ fields: [String: YAMLNode], context: String, at keyNode: YAMLNode, _ diagnostics: Diagnostics) -> RoutingPolicy? {
        let given = ["threshold", "strong_fraction", "policy"].filter { fields[$0] != nil }
        guard given.count == 1 else {
            if given.isEmpty {
                diagnostics.report(
                    "\(context) needs 'threshold' or 'strong_fraction' (the share of traffic to send to the strong model), or a 'policy:' (one of \(RoutingPolicy.names.joined(separator: ", ")))",
                    at: keyNode)
            } else {
                diagnostics.report("\(context) sets both \(given.map { "'\($0)'" }.joined(separator: " and ")); keep one", at: fields[given[1]])
            }
            return nil
        }
        if let node = fields["threshold"] { return node.double("\(context): threshold", in: 0...1, diagnostics).map { .threshold($0) } }
        if let node = fields["strong_fraction"] {
            return node.double("\(context): strong_fraction", in: 0...1, diagnostics).map { .strongFraction($0) }
        }
        let policyNode = fields["policy"]!
        let policyFields = policyNode.fields("\(context): policy", allowed: Set(RoutingPolicy.names), diagnostics)
        guard policyFields.count == 1, let (kind, node) = policyFields.first else {
            diagnostics.report(
                "\(context): policy must name exactly one of \(RoutingPolicy.names.joined(separator: ", ")), e.g. `policy: {lambda: 0.5}`",
                at: policyNode)
            return nil
        }
        let where_ = "\(context): policy.\(kind)"
        switch kind {
        case "threshold": return node.double(where_, in: 0...1, diagnostics).map { .threshold($0) }
        case "strong_fraction": return node.double(where_, in: 0...1, diagnostics).map { .strongFraction($0) }
        case "lambda": return node.double(where_, in: 0...1e12, diagnostics).map { .lambda($0) }
        case "cheapest_within": return node.double(where_, in: 0...1e12, diagnostics).map { .cheapestWithin($0) }
        default: return readBudget(node, context: where_, diagnostics).map { .budget($0) }
        }
    }

    private static func readBudget(_ node: YAMLNode, context: String, _ diagnostics: Diagnostics) -> Budget? {
        let fields = node.fields(context, allowed: ["mean_cost", "share", "model", "window", "update_every"], diagnostics)
        let window = fields["window"]?.int("\(context).window", in: 10...1_000_000, diagnostics) ?? 1000
        let updateEvery = fields["update_every"]?.int("\(context).update_every", in: 1...1_000_000, diagnostics) ?? 16
        switch (fields["mean_cost"], fields["share"]) {
        case (let costNode?, nil):
            if fields["model"] != nil { diagnostics.report("\(context): 'model' goes with 'share', not 'mean_cost'", at: fields["model"]) }
            return costNode.double("\(context).mean_cost", in: 0...1e6, diagnostics).map {
                Budget(target: .meanCost($0), window: window, updateEvery: updateEvery)
            }
        case (nil, let shareNode?):
            guard let modelNode = fields["model"] else {
                diagnostics.report("\(context): 'share' needs 'model', the candidate whose share of traffic is the target", at: shareNode)
                return nil
            }
            guard let share = shareNode.double("\(context).share", in: 0...1, diagnostics),
                let model = modelNode.string("\(context).model", diagnostics)
            else { return nil }
            return Budget(target: .share(model: model, fraction: share), window: window, updateEvery: updateEvery)
        default:
            diagnostics.report(
                "\(context) needs exactly one target: 'mean_cost' (USD per request) or 'share' with 'model' (a share of traffic)", at: node)
            return nil
        }
    }

    /// The router's candidates and its strong and weak model, checked against the catalogue and the policy.
    static func readCandidates(
        _ fields: [String: YAMLNode], policy: RoutingPolicy?, catalogue: ModelCatalogue, context: String, at keyNode: YAMLNode,
        _ diagnostics: Diagnostics
    ) -> (candidates: [String], strong: String, weak: String)? {
        let strong = fields["strong_model"]?.string("\(context): strong_model", diagnostics)
        let weak = fields["weak_model"]?.string("\(context): weak_model", diagnostics)
        var candidates: [String]
        if let node = fields["candidates"] {
            candidates = node.list("\(context): candidates", diagnostics).compactMap { $0.string("\(context): candidates entry", diagnostics) }
            guard candidates.count >= 2 else {
                diagnostics.report("\(context): candidates must name two or more models, found \(candidates.count)", at: node)
                return nil
            }
            if Set(candidates).count != candidates.count {
                diagnostics.report("\(context): candidates names a model twice", at: node)
                return nil
            }
        } else if let strong, let weak {
            candidates = [strong, weak]
        } else if fields["strong_model"] != nil || fields["weak_model"] != nil {
            let missing = fields["strong_model"] == nil ? "strong_model" : "weak_model"
            if fields[missing] == nil { diagnostics.report("\(context) is missing required key '\(missing)'", at: keyNode) }
            return nil
        } else {
            diagnostics.report(
                "\(context) needs 'candidates' (two or more models) or 'strong_model' and 'weak_model'", at: fields["strong_model"] ?? keyNode)
            return nil
        }
        if !catalogue.isEmpty {
            let unknown = (candidates + [strong, weak].compactMap { $0 }).filter { catalogue.model(named: $0) == nil }
            for name in Set(unknown).sorted() {
                diagnostics.report(
                    "\(context): model '\(name)' is not in the models: catalogue (known models: \(catalogue.knownNames.joined(separator: ", ")))",
                    at: fields["candidates"] ?? keyNode)
            }
            if !unknown.isEmpty { return nil }
        }
        for (key, name) in [("strong_model", strong), ("weak_model", weak)] {
            if let name, !candidates.contains(name) {
                diagnostics.report("\(context): \(key) '\(name)' is not one of its candidates", at: fields[key])
                return nil
            }
        }
        if let policy, policy.isBinary, candidates.count != 2 {
            diagnostics.report(
                "\(context): policy '\(policy.name)' chooses between two models, and it has \(candidates.count) candidates; use policy lambda, cheapest_within or budget",
                at: fields["candidates"] ?? keyNode)
            return nil
        }
        if let policy, !policy.isBinary, catalogue.isEmpty {
            diagnostics.report(
                "\(context): policy '\(policy.name)' weighs each candidate's cost; add a 'models:' catalogue with their prices (etc/routerd/models.yaml has list prices)",
                at: fields["policy"])
            return nil
        }
        if case .budget(let budget)? = policy, case .share(let model, _) = budget.target, !candidates.contains(model) {
            diagnostics.report("\(context): the budget's share is of '\(model)', which is not one of its candidates", at: fields["policy"])
            return nil
        }
        if let strong, let weak {
            if strong == weak { diagnostics.report("\(context): strong_model and weak_model are the same model", at: fields["weak_model"]) }
            if candidates.count == 2, Set(candidates) == [strong, weak] { candidates = [strong, weak] }
            return (candidates, strong, weak)
        }
        // Unnamed, the strong and weak models are the dearest and the cheapest candidate.
        guard !catalogue.isEmpty else {
            diagnostics.report(
                "\(context): name 'strong_model' and 'weak_model', or add a 'models:' catalogue so the dearest and cheapest candidate can be told",
                at: fields["candidates"] ?? keyNode)
            return nil
        }
        let byCost = candidates.sorted { catalogue.model(named: $0)!.nominalCost > catalogue.model(named: $1)!.nominalCost }
        let dearest = byCost.first!
        let cheapest = byCost.last!
        if candidates.count == 2 { candidates = [dearest, cheapest] }
        return (candidates, dearest, cheapest)
    }
}
