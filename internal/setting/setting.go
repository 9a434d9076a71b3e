// Package setting holds the one rule tidemark's packages apply to their numeric settings: a
// zero field takes the package's default, and a negative one is an error that names the
// setting (its flag where it has one), never silently replaced.
package setting

import (
	"fmt"
	"time"
)

// Default sets a zero *v to d, and appends an error naming name to errs when *v is negative.
func Default[T int | time.Duration](errs *[]error, name string, v *T, d T) {
	switch {
	case *v == 0:
		*v = d
	case *v < 0:
		*errs = append(*errs, fmt.Errorf("%s %v must be positive", name, *v))
	}
}
