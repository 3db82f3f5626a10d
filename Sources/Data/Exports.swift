// `Preprocessing` (the input transform that travels with a model's weights) lives below both the
// data pipeline and the model zoo, in ImagePreprocessing; importing Data brings it along.
@_exported import ImagePreprocessing
