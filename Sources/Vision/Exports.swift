// Every pretrained model carries its `Preprocessing` (ImagePreprocessing, a target below Vision that
// needs no image codecs); importing Vision brings it along.
@_exported import ImagePreprocessing
