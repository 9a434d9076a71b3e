package replication

import (
	"errors"
	"fmt"
	"time"

	"github.com/tidemark/tidemark/internal/setting"
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
	setting.Default(&errs, "--status-interval", &c.StatusInterval, d.StatusInterval)
	setting.Default(&errs, "FlushCommits", &c.FlushCommits, d.FlushCommits)
	setting.Default(&errs, "ShutdownTimeout", &c.ShutdownTimeout, d.ShutdownTimeout)
	setting.Default(&errs, "MaxBackoff", &c.MaxBackoff, d.MaxBackoff)
	if c.Heartbeat < 0 {
		errs = append(errs, fmt.Errorf("--heartbeat %s is negative (0 disables it)", c.Heartbeat))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("replication: %w", err)
	}
	return nil
}
