package storage

// Test hooks for the entry codec, which is unexported because nothing
// outside storage should depend on the file format.
var (
	EncodeEntry = encodeEntry
	DecodeEntry = decodeEntry
)
