package event

import "errors"

// Errors of [Decode] and [Decoder.Decode], for errors.Is. The error returned wraps one of
// them and says where in the data the problem is.
var (
	// ErrMalformed means the data is not a tidemark event and never will be: not JSON, a
	// field of the wrong type, an LSN that does not parse, a row change without its key or
	// row image, or no source.commit_lsn. A consumer sets such a message aside (tidemark's
	// encoder puts it in the dead-letter stream) rather than retry it.
	ErrMalformed = errors.New("malformed event")
	// ErrUnknownOp means the data is a JSON object whose op this version of the package does
	// not know: most likely a kind of event added to tidemark after the consumer was built
	// (control events such as snapshot epochs). A consumer that only follows row changes
	// may skip it; one that keeps state should upgrade the package.
	ErrUnknownOp = errors.New("unknown event op")
)
