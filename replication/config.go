package replication

import (
	"errors"
	"fmt"
	"time"
)

// DefaultConfig is the configuration a [Replicator] runs with where a field is left zero (but
// Heartbeat: zero disables it), and the defaults of tidemark replicate's flags. Slot and
// Publication are required; these are the flags' defaults.
func DefaultConfig() Config {
	return Config{
		Slot:            DefaultSlot,
		Publication:     DefaultPublication,
		StatusInterval:  time.Second,
		FlushCommits:    10000,
		Heartbeat:       10 * time.Second,
		ShutdownTimeout: 5 * time.Second,
		MaxBackoff:      10 * time.Second,
	}
}

// Validate returns the error [New] would return for c, so that a command can check its flags
// before it creates anything.
func (c Config) Validate() error { return c.defaults() }

// defaults fills the zero fields of c from [DefaultConfig]; an invalid one is an error that
// names it (its flag where it has one).
func (c *Config) defaults() error {
	if !slotName.MatchString(c.Slot) {
		return fmt.Errorf("slot name %q: use 1-63 lower-case letters, digits and underscores", c.Slot)
	}
	if c.Publication == "" {
		return errors.New("publication name is empty")
	}
	d := DefaultConfig()
	var errs []error
	setDefault(&errs, "--status-interval", &c.StatusInterval, d.StatusInterval)
	setDefault(&errs, "FlushCommits", &c.FlushCommits, d.FlushCommits)
	setDefault(&errs, "ShutdownTimeout", &c.ShutdownTimeout, d.ShutdownTimeout)
	setDefault(&errs, "MaxBackoff", &c.MaxBackoff, d.MaxBackoff)
	if c.Heartbeat < 0 {
		errs = append(errs, fmt.Errorf("replication: --heartbeat %s is negative (0 disables it)", c.Heartbeat))
	}
	return errors.Join(errs...)
}

// setDefault sets a zero *v to d, and notes a negative one as an error naming it.
func setDefault[T int | time.Duration](errs *[]error, name string, v *T, d T) {
	switch {
	case *v == 0:
		*v = d
	case *v < 0:
		*errs = append(*errs, fmt.Errorf("replication: %s %v must be positive", name, *v))
	}
}
