import AtomicFiles
import Foundation
import Torch

/// Why a `.pth` file could not be imported. The message always names the file.
public struct PthImportError: Error, CustomStringConvertible, LocalizedError {
    /// The path as given to `PthImport`.
    public let path: String
    /// What went wrong; nil when the file could not be read at all.
    public let kind: PickleError.Kind?
    /// What went wrong, in words, without the path (e.g. "the file is empty (0 bytes)").
    public let reason: String

    /// An error for `path`; `kind` classifies it (nil: the file could not be read).
    public init(path: String, kind: PickleError.Kind?, reason: String) {
        self.path = path
        self.kind = kind
        self.reason = reason
    }

    /// The dotted name of the refused global (e.g. `posix.system`), when that is the reason.
    public var refusedGlobal: String? {
        if case .refusedGlobal(let name)? = kind { return name }
        return nil
    }

    /// "refusing to load '<path>': …" for a refused global, else "cannot load '<path>': …".
    public var description: String {
        refusedGlobal != nil ? "refusing to load '\(path)': \(reason)" : "cannot load '\(path)': \(reason)"
    }

    /// The same text as `description`, for `localizedDescription`.
    public var errorDescription: String? { description }
}

/// Safe import of PyTorch `.pth` / `.pt` checkpoints (`torch.save` output) without Python.
///
/// The pickle inside is read by a restricted unpickler (`Unpickler`) that never executes anything:
/// only the globals on `TorchGlobals.allowList` (OrderedDict, tensor rebuild functions, storage
/// classes) are accepted, and any other global fails immediately with an error naming it.
///
/// Both on-disk formats are supported:
/// - zip (torch ≥ 1.6): `<prefix>/data.pkl` plus `<prefix>/data/<key>` storage records, which must be
///   *stored* (uncompressed), as torch.save writes them; zip64 and alignment padding are handled;
/// - legacy (torch < 1.6, or `_use_new_zipfile_serialization=False`): magic number, protocol 1001,
///   system info, the main pickle, the list of storage keys, then each storage's raw bytes.
///
/// Tensors are rebuilt by viewing their storage with the pickled offset, size and *stride*, then copying
/// to a fresh contiguous tensor: tensors saved permuted (transposed, channels-last) come out with the
/// right values, and tensors sharing a storage get independent copies. Imported tensors live on the
/// CPU with `requiresGrad == false` whatever device they were saved from.
public enum PthImport {
    /// The container `torch.save` used for the file.
    public enum Format: String, Sendable {
        /// A zip archive (`<prefix>/data.pkl` plus one stored record per storage): torch ≥ 1.6's default.
        case zip
        /// The pre-1.6 stream of pickles followed by raw storage bytes (`_use_new_zipfile_serialization=False`).
        case legacy
    }

    /// What an import found besides the tensors.
    public struct Report: CustomStringConvertible {
        /// Which of the two on-disk formats the file used.
        public var format: Format
        /// Where the state dict was found: nil for the top-level dictionary, otherwise the key
        /// ("state_dict", "model" or "model_state_dict") of the top-level dictionary that held it.
        public var stateDictKey: String?
        /// Entries of the state dict that are not tensors and were skipped (key, Python type), in file
        /// order, followed by the dictionary's attributes (`_metadata`, "OrderedDict attribute").
        public var skipped: [(key: String, type: String)] = []
        /// Keys of tensors stored with non-row-major strides (permuted / channels-last), in file order.
        public var nonContiguous: [String] = []
        /// How many storages hold more than one of the imported tensors.
        public var sharedStorages: Int = 0
        /// How many tensors were imported.
        public var tensorCount: Int = 0

        /// A one-line summary, e.g. "zip .pth, 320 tensors (state dict under 'model'); skipped: …".
        public var description: String {
            var lines = ["\(format) .pth, \(tensorCount) tensors" +
                         (stateDictKey.map { " (state dict under '\($0)')" } ?? "")]
            if !nonContiguous.isEmpty { lines.append("\(nonContiguous.count) stored permuted (made contiguous)") }
            if sharedStorages > 0 { lines.append("\(sharedStorages) storages shared by several tensors") }
            if !skipped.isEmpty {
                lines.append("skipped: " + skipped.map { "\($0.key) (\($0.type))" }.joined(separator: ", "))
            }
            return lines.joined(separator: "; ")
        }
    }

    /// What `read(_:)` returns: the tensors and the report.
    public struct Result {
        /// The state dict's tensors under their keys, in file order: contiguous CPU copies, `requiresGrad` false.
        public var tensors: StateDict
        /// The file's format, where the state dict was found, and what was skipped or made contiguous.
        public var report: Report
    }

    /// Keys of a top-level dictionary searched, in this order, for a nested state dict when the
    /// top level itself holds no tensors (training checkpoints: `{"epoch": 3, "state_dict": {...}}`).
    /// Nothing else is flattened.
    public static let nestedStateDictKeys = ["state_dict", "model", "model_state_dict"]

    /// The tensors of a `.pth` state dict, in file order.
    public static func load(_ path: String) throws -> StateDict { try read(path).tensors }

    /// The tensors of a `.pth` state dict and a report of what was skipped or rearranged.
    public static func read(_ path: String) throws -> Result {
        let mapping: FileMapping?
        do {
            mapping = try FileMapping.map(path)  // the safetensors reader's mapping: one open-and-map for both
        } catch let error as RegularFileError {
            throw PthImportError(path: path, kind: nil, reason: "the file cannot be read (\(error.reason))")
        }
        guard let mapping else {
            throw PthImportError(path: path, kind: .truncated, reason: "the file is empty (0 bytes)")
        }
        // The bytes stay mapped while the Data lives (its deallocator holds the mapping).
        let data = Data(bytesNoCopy: mapping.base, count: mapping.length,
                        deallocator: .custom { _, _ in withExtendedLifetime(mapping) {} })
        do {
            return try PthDecoder(data: data).decode()
        } catch let error as PickleError {
            throw PthImportError(path: path, kind: error.kind, reason: error.message)
        } catch let error as TorchError {
            throw PthImportError(path: path, kind: .malformed, reason: "LibTorch: \(error.message)")
        }
    }

    /// Imports `pth` and writes its tensors as safetensors, with metadata
    /// `{"source": <file name>, "format": "pt"}`. Returns the import report.
    @discardableResult
    public static func convert(pth: String, to safetensorsPath: String) throws -> Report {
        let result = try read(pth)
        let source = URL(fileURLWithPath: pth).lastPathComponent
        try SafeTensors.write(result.tensors, metadata: ["source": source, "format": "pt"], to: safetensorsPath)
        return result.report
    }
}

// MARK: - Decoding

/// Storage bytes: where a root storage's data lies in the file.
private struct StorageRecord {
    let dtype: DType
    /// Byte range in the file.
    let bytes: Range<Int>
}

/// An aligned, Swift-owned copy of one storage; the owner of the tensor views made over it.
private final class AlignedStorage {
    let pointer: UnsafeMutableRawPointer
    init(copying source: UnsafeRawBufferPointer) {
        pointer = UnsafeMutableRawPointer.allocate(byteCount: max(source.count, 1), alignment: 64)
        if let base = source.baseAddress, source.count > 0 { pointer.copyMemory(from: base, byteCount: source.count) }
    }
    deinit { pointer.deallocate() }
}

private final class PthDecoder {
    let data: Data
    /// Root storages by key, filled by the persistent-id handler (zip) or the storage section (legacy).
    private var storages: [String: StorageRecord] = [:]
    /// Legacy: storages declared by the pickle (dtype, numel), before their bytes are located.
    private var declared: [String: (dtype: DType, numel: Int)] = [:]

    static let legacyMagic: [UInt8] = [0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19]

    init(data: Data) { self.data = data }

    func decode() throws -> PthImport.Result {
        try data.withUnsafeBytes { buffer in
            let format: PthImport.Format
            let root: PickleValue
            if ZipArchive.looksLikeZip(buffer) {
                format = .zip
                root = try readZip(buffer)
            } else if buffer.count > 262, Array(buffer[257..<262]) == Array("ustar".utf8) {
                throw PickleError.unsupported("this is the tar-based format of torch < 0.4, which is not supported; " +
                                              "re-save it with a newer torch")
            } else if buffer[0] == Opcode.PROTO {
                format = .legacy
                root = try readLegacy(buffer)
            } else {
                let head = buffer.prefix(8).map { String(format: "%02x", $0) }.joined(separator: " ")
                throw PickleError.malformed("not a PyTorch checkpoint: it is neither a zip archive nor a pickle " +
                                            "(it starts with \(head))")
            }
            return try makeStateDict(root, format: format, buffer: buffer)
        }
    }

    private func unpickler(start: Int, end: Int? = nil) -> Unpickler {
        Unpickler(data: data, start: start, end: end, allowList: .torch)
    }

    // MARK: zip

    private func readZip(_ buffer: UnsafeRawBufferPointer) throws -> PickleValue {
        let zip = try ZipArchive(buffer)
        let pickles = zip.entries.filter { $0.name == "data.pkl" || $0.name.hasSuffix("/data.pkl") }
        guard pickles.count <= 1 else {
            throw PickleError.malformed("the zip archive holds \(pickles.count) data.pkl entries (" +
                                        pickles.map(\.name).joined(separator: ", ") + "): not one torch.save checkpoint")
        }
        guard let pkl = pickles.first else {
            if zip.entries.contains(where: { $0.name.hasSuffix("constants.pkl") || $0.name.contains("/code/") }) {
                throw PickleError.unsupported("this is a TorchScript archive (torch.jit.save), not a torch.save " +
                                              "checkpoint")
            }
            throw PickleError.malformed("the zip archive has no data.pkl entry: not a torch.save checkpoint")
        }
        let prefix = String(pkl.name.dropLast("data.pkl".count))
        if let order = zip.entry(prefix + "byteorder") {
            let range = try zip.dataRange(order, in: buffer)
            let order = String(decoding: buffer[range], as: UTF8.self)
            if order == "big" {
                throw PickleError.unsupported("the checkpoint was saved on a big-endian machine, which is not supported")
            }
            guard order == "little" else {
                throw PickleError.malformed("the archive's byteorder record says '\(order.prefix(32))', not 'little' or 'big'")
            }
        }
        let pklRange = try zip.dataRange(pkl, in: buffer)
        let machine = unpickler(start: pklRange.lowerBound, end: pklRange.upperBound)
        machine.persistentLoad = { [unowned self] pid in
            let (dtype, key, location, numel, _) = try Self.storageID(pid, legacy: false)
            if let existing = self.storages[key] {
                guard existing.dtype == dtype else {
                    throw PickleError.unsupported("storage '\(key)' is used as both \(existing.dtype) and \(dtype)")
                }
            } else {
                let name = prefix + "data/" + key
                guard let entry = zip.entry(name) else {
                    throw PickleError.malformed("the pickle references storage '\(key)', but the archive has no " +
                                                "entry '\(name)'")
                }
                let range = try zip.dataRange(entry, in: buffer)
                let needed = try Checked.mul(numel, dtype.byteSize, "the size of storage '\(key)'")
                guard range.count >= needed else {
                    throw PickleError.malformed("storage '\(key)' holds \(range.count) bytes, but the pickle " +
                                                "describes \(numel) \(dtype) elements (\(needed) bytes)")
                }
                self.storages[key] = StorageRecord(dtype: dtype, bytes: range.lowerBound..<(range.lowerBound + needed))
            }
            return .storage(PickleStorage(key: key, dtype: dtype, location: location, numel: numel, view: nil))
        }
        defer { machine.persistentLoad = nil }
        return try machine.load()
    }

    // MARK: legacy

    private func readLegacy(_ buffer: UnsafeRawBufferPointer) throws -> PickleValue {
        var position = 0
        func next(_ what: String, persistent: ((PickleValue) throws -> PickleValue)? = nil) throws -> PickleValue {
            let machine = unpickler(start: position)
            machine.persistentLoad = persistent
            defer { machine.persistentLoad = nil }
            do {
                let value = try machine.load()
                position = machine.position
                return value
            } catch let error as PickleError {
                if case .refusedGlobal = error.kind { throw error }
                throw PickleError(error.kind, "\(what): \(error.message)")
            }
        }

        let magic = try next("reading the magic number")
        guard case .bigInt(let bytes) = magic, bytes == Self.legacyMagic else {
            throw PickleError.malformed("not a PyTorch checkpoint: the first pickle is \(magic), not the magic number " +
                                        "of torch.save's legacy format")
        }
        let version = try next("reading the protocol version")
        guard case .int(1001) = version else {
            throw PickleError.unsupported("legacy protocol version \(version) is not supported (expected 1001)")
        }
        let info = try next("reading the system information")
        if case .dict(let dict) = info, case .bool(false)? = dict["little_endian"] {
            throw PickleError.unsupported("the checkpoint was saved on a big-endian machine, which is not supported")
        }
        let root = try next("reading the main pickle") { [unowned self] pid in
            let (dtype, key, location, numel, view) = try Self.storageID(pid, legacy: true)
            if let existing = self.declared[key] {
                guard existing.dtype == dtype else {
                    throw PickleError.unsupported("storage '\(key)' is used as both \(existing.dtype) and \(dtype)")
                }
            } else {
                self.declared[key] = (dtype, numel)
            }
            let rootNumel = self.declared[key]?.numel ?? numel
            if let view, view.upperBound > rootNumel {
                throw PickleError.malformed("a view of storage '\(key)' covers elements \(view), past its \(rootNumel)")
            }
            return .storage(PickleStorage(key: key, dtype: dtype, location: location, numel: rootNumel, view: view))
        }
        let keyList = try next("reading the storage key list")
        guard let keyValues = keyList.sequenceItems else {
            throw PickleError.malformed("the storage key list is a \(keyList.typeName)")
        }
        var r = try ByteReader(buffer, from: position, what: "the storage data")
        for value in keyValues {
            guard let key = Self.key(value) else {
                throw PickleError.malformed("the storage key list holds a \(value.typeName)")
            }
            guard let declaration = declared[key] else {
                throw PickleError.malformed("the file stores storage '\(key)', which the pickle never references")
            }
            let count = try r.i64("the element count of storage '\(key)'")
            guard count == Int64(declaration.numel) else {
                throw PickleError.malformed("storage '\(key)' records \(count) elements, but the pickle says " +
                                            "\(declaration.numel)")
            }
            let size = try Checked.mul(declaration.numel, declaration.dtype.byteSize, "the size of storage '\(key)'")
            let range = try r.range(size, "the data of storage '\(key)'")
            storages[key] = StorageRecord(dtype: declaration.dtype, bytes: range)
        }
        if let missing = declared.keys.sorted().first(where: { storages[$0] == nil }) {
            throw PickleError.malformed("the pickle references storage '\(missing)', which the file does not contain")
        }
        return root
    }

    private static func key(_ value: PickleValue) -> String? {
        switch value {
        case .string(let s): return s
        case .int(let i): return String(i)
        default: return nil
        }
    }

    /// Parses `('storage', StorageClass, key, location, numel)` (zip) or
    /// `('storage', StorageClass, root_key, location, numel, view_metadata)` (legacy).
    private static func storageID(_ pid: PickleValue, legacy: Bool)
        throws -> (DType, String, String, Int, Range<Int>?) {
        guard let items = pid.sequenceItems, let typename = items.first?.stringValue else {
            throw PickleError.malformed("a persistent id is a \(pid.typeName), not a ('storage', ...) tuple")
        }
        if typename == "module" {
            throw PickleError.unsupported("the file stores a whole nn.Module object, not a state dict; save " +
                                          "model.state_dict() instead")
        }
        guard typename == "storage" else {
            throw PickleError.malformed("unknown persistent id type '\(typename)'")
        }
        guard items.count == (legacy ? 6 : 5) else {
            throw PickleError.malformed("a storage persistent id has \(items.count) fields, expected \(legacy ? 6 : 5)")
        }
        guard case .global(let type) = items[1], case .storageClass(let dtype)? = type.torchRole else {
            throw PickleError.malformed("a storage persistent id names \(items[1]), not a storage class")
        }
        guard let key = Self.key(items[2]), !key.isEmpty, !key.contains("/"), key != "..", key != "." else {
            throw PickleError.malformed("a storage persistent id has the key \(items[2])")
        }
        let location = items[3].stringValue ?? "cpu"
        guard let numel = items[4].intValue, numel >= 0 else {
            throw PickleError.malformed("storage '\(key)' has the element count \(items[4])")
        }
        var view: Range<Int>? = nil
        if legacy, let meta = items[5].sequenceItems {
            guard meta.count == 3, let offset = meta[1].intValue, let size = meta[2].intValue, offset >= 0, size >= 0 else {
                throw PickleError.malformed("storage '\(key)' has malformed view metadata")
            }
            view = offset..<(try Checked.add(offset, size, "a storage view"))
        }
        return (dtype, key, location, numel, view)
    }

    // MARK: state dict

    private func makeStateDict(_ root: PickleValue, format: PthImport.Format,
                               buffer: UnsafeRawBufferPointer) throws -> PthImport.Result {
        guard case .dict(let top) = root else {
            throw PickleError.unsupported("the file holds a \(root.typeName), not a state dict (a dict of tensors)")
        }
        var report = PthImport.Report(format: format)
        var dict = top
        func holdsTensors(_ d: PickleDict) -> Bool {
            d.entries.contains { if case .tensor = $0.value { return true } else { return false } }
        }
        if !holdsTensors(top) {
            for key in PthImport.nestedStateDictKeys {
                if case .dict(let nested)? = top[key], holdsTensors(nested) {
                    dict = nested
                    report.stateDictKey = key
                    break
                }
            }
            if report.stateDictKey == nil, top.count > 0 {
                let keys = top.entries.prefix(12).map { $0.key.description }.joined(separator: ", ")
                throw PickleError.unsupported("found no tensors: the top-level dict holds \(keys)" +
                                              (top.count > 12 ? ", ..." : "") + ", and none of " +
                                              PthImport.nestedStateDictKeys.map { "'\($0)'" }.joined(separator: ", ") +
                                              " holds a state dict")
            }
        }

        var specs: [(String, PickleTensor)] = []
        for (key, value) in dict.entries {
            guard let name = key.stringValue else {
                report.skipped.append((key.description, "\(value.typeName) under a \(key.typeName) key"))
                continue
            }
            guard case .tensor(let spec) = value else {
                report.skipped.append((name, value.typeName))
                continue
            }
            specs.append((name, spec))
        }
        for (name, value) in dict.attributes { report.skipped.append((name, "\(value.typeName) attribute")) }

        var uses: [String: Int] = [:]
        for (_, spec) in specs { uses[spec.storage.key, default: 0] += 1 }
        report.sharedStorages = uses.values.filter { $0 > 1 }.count

        var copies: [String: AlignedStorage] = [:]
        var tensors = StateDict()
        // Every tensor becomes a copy of its own, so tensors sharing one storage would multiply it: a
        // 4 MB file of 20,000 views of one storage asked for 80 GB. The copies may take twice the file
        // (tied weights) and 256 MiB more (expanded views); past that the file is refused.
        var budget = 2 * buffer.count + (256 << 20)
        for (name, spec) in specs {
            if !spec.isContiguous { report.nonContiguous.append(name) }
            tensors[name] = try materialize(name, spec, buffer: buffer, copies: &copies, budget: &budget)
        }
        report.tensorCount = tensors.count
        return PthImport.Result(tensors: tensors, report: report)
    }

    /// Views the storage with the pickled offset/shape/strides and copies it into a contiguous tensor.
    /// `budget` is the bytes the file's tensors may still take; this one's are taken from it.
    private func materialize(_ name: String, _ spec: PickleTensor, buffer: UnsafeRawBufferPointer,
                             copies: inout [String: AlignedStorage], budget: inout Int) throws -> Tensor {
        let key = spec.storage.key
        guard let record = storages[key] else {
            throw PickleError.malformed("tensor '\(name)' uses storage '\(key)', which the file does not contain")
        }
        let dtype = record.dtype
        let elementSize = dtype.byteSize
        let rootCount = record.bytes.count / elementSize
        let window = spec.storage.view ?? 0..<rootCount
        guard window.upperBound <= rootCount else {
            throw PickleError.malformed("tensor '\(name)': its storage view \(window) exceeds storage '\(key)' " +
                                        "(\(rootCount) elements)")
        }
        let layout = "shape \(spec.shape), stride \(spec.strides), offset \(spec.offset)"
        guard spec.shape.count <= 64, spec.offset >= 0, spec.shape.allSatisfy({ $0 >= 0 }),
              spec.strides.allSatisfy({ $0 >= 0 }) else {
            throw PickleError.malformed("tensor '\(name)' has an invalid layout (\(layout))")
        }
        var numel = 1
        for size in spec.shape { numel = try Checked.mul(numel, size, "the element count of tensor '\(name)'") }
        if numel == 0 { return try Tensor.zeros(spec.shape, dtype: dtype) }
        var last = spec.offset
        for (size, stride) in zip(spec.shape, spec.strides) {
            last = try Checked.add(last, try Checked.mul(size - 1, stride, "the extent of tensor '\(name)'"),
                                   "the extent of tensor '\(name)'")
        }
        guard last < window.count else {
            throw PickleError.malformed("tensor '\(name)' (\(layout)) reaches element \(last) of storage '\(key)', " +
                                        "which holds \(window.count) elements")
        }
        let resultBytes = try Checked.mul(numel, elementSize, "the size of tensor '\(name)'")
        guard numel <= window.count || resultBytes <= 64 * max(buffer.count, 1 << 20) else {
            throw PickleError.unsupported("tensor '\(name)' (\(layout)) would expand \(window.count) stored " +
                                          "elements to \(resultBytes) bytes")
        }
        guard resultBytes <= budget else {
            throw PickleError.unsupported("tensor '\(name)' would take the file's tensors past \(2 * buffer.count + (256 << 20)) "
                + "bytes once copied, from \(buffer.count) bytes in the file: its tensors share storages many times over")
        }
        budget -= resultBytes
        let copy: AlignedStorage
        if let existing = copies[key] {
            copy = existing
        } else {
            copy = AlignedStorage(copying: UnsafeRawBufferPointer(rebasing: buffer[record.bytes]))
            copies[key] = copy
        }
        let start = (window.lowerBound + spec.offset) * elementSize  // < rootCount * elementSize: checked above
        let view = try Tensor.wrapping(copy.pointer + start, shape: spec.shape, strides: spec.strides,
                                       dtype: dtype, owner: copy)
        // A fresh, contiguous tensor that owns its memory (the storage copy is shared by other views).
        return view.isContiguous() ? try view.clone() : try view.contiguous()
    }
}
