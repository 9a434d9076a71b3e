package encoder

import "errors"

// Errors of package encoder, for errors.Is.
var (
	// ErrIndexBusy means another session is building that index.
	ErrIndexBusy = errors.New("another process is building this index")

	// ErrPoison marks an event that can never be processed: it goes to the dead-letter stream.
	ErrPoison = errors.New("poison event")

	// ErrNotMigrated is returned when product_embeddings does not exist: run `tidemark migrate`.
	ErrNotMigrated = errors.New("table product_embeddings does not exist (run tidemark migrate)")
)
