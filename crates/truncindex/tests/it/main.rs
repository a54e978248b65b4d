//! Integration tests of layerstore-truncindex: the index against a model. One test binary.

mod model_check;
