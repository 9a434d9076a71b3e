package health

import "errors"

// Errors of package health, for errors.Is.
var (
	// ErrUnknownSupplier means no supplier has the ID asked for.
	ErrUnknownSupplier = errors.New("no such supplier")
)
