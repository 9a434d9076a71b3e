package loader

import "errors"

// Errors of package loader, for errors.Is.
var (
	// ErrEncoding is returned (wrapped, with the line, the bytes and the likely encoding) when a drop
	// is not in the encoding it is read with: not UTF-8 while no encoding is set, or a byte the set
	// encoding does not define. The load stops there, writing nothing, rather than reject record
	// after record of a drop read the wrong way.
	ErrEncoding = errors.New("not in the drop's encoding")

	// ErrTooManyRejects means more records were rejected than Options.MaxRejects allows; nothing
	// was written.
	ErrTooManyRejects = errors.New("too many rejected records")

	// ErrFullWouldDeleteTooMuch means a --full drop would delete more than half of the supplier's
	// products and Options.Force was not set; nothing was written.
	ErrFullWouldDeleteTooMuch = errors.New("full load would delete more than half of the supplier's products")

	// ErrBadProfile is returned (wrapped, saying what is wrong) for a drop profile that cannot
	// describe a drop: an unknown key, format, encoding or column, a separator twice, …
	ErrBadProfile = errors.New("bad drop profile")

	// ErrUnknownColumn is returned (wrapped, naming the column) for a column or key the loader does
	// not know.
	ErrUnknownColumn = errors.New("unknown column")
)
