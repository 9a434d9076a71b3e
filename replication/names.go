package replication

// The names tidemark gives its replication objects unless told otherwise (--slot,
// --publication).
const (
	// DefaultSlot is the logical replication slot; it is also the key of its checkpoint.
	DefaultSlot = "tidemark"
	// DefaultPublication is the publication the slot streams.
	DefaultPublication = "tidemark"
)
