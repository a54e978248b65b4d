//! The tar-split codec: disassemble a tar stream into records and reassemble it byte for byte
