package sink

import (
	"errors"
	"fmt"
	"time"

	"github.com/tidemark/tidemark/event"
	"github.com/tidemark/tidemark/internal/setting"
)

// DefaultOptions are the options a [Publisher] runs with where a field is left zero, and the
// defaults of tidemark replicate's flags.
func DefaultOptions() Options {
	return Options{
		Stream:      event.Stream,
		Format:      event.FormatNative,
		MaxInFlight: 4096,
		AckTimeout:  10 * time.Second,
		MaxScan:     100_000,
	}
}

// Validate returns the error [NewPublisher] would return for o's settings.
func (o Options) Validate() error { return o.defaults() }

// defaults fills the zero fields of o from [DefaultOptions]; an invalid one is an error that
// names it (its flag where it has one).
func (o *Options) defaults() error {
	d := DefaultOptions()
	if o.Stream == "" {
		o.Stream = d.Stream
	}
	if o.Format == "" {
		o.Format = d.Format
	}
	if o.Format != event.FormatNative && o.Format != event.FormatDebezium {
		return fmt.Errorf("event format %q: want native or debezium", o.Format)
	}
	var errs []error
	setting.Default(&errs, "--max-in-flight", &o.MaxInFlight, d.MaxInFlight)
	setting.Default(&errs, "--ack-timeout", &o.AckTimeout, d.AckTimeout)
	setting.Default(&errs, "MaxScan", &o.MaxScan, d.MaxScan)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sink: %w", err)
	}
	return nil
}

// DefaultStreamConfig is the change stream's setup where a field of [StreamConfig] is left
// zero, and the defaults of tidemark replicate's flags.
func DefaultStreamConfig() StreamConfig {
	return StreamConfig{
		Name:       event.Stream,
		Duplicates: 2 * time.Minute,
		Replicas:   1,
	}
}

// Validate returns the error [EnsureStream] would return for c's settings.
func (c StreamConfig) Validate() error { return c.defaults() }

// defaults fills the zero fields of c from [DefaultStreamConfig]; a negative one is an error
// that names its flag.
func (c *StreamConfig) defaults() error {
	d := DefaultStreamConfig()
	if c.Name == "" {
		c.Name = d.Name
	}
	var errs []error
	setting.Default(&errs, "--dedup-window", &c.Duplicates, d.Duplicates)
	setting.Default(&errs, "--replicas", &c.Replicas, d.Replicas)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sink: %w", err)
	}
	return nil
}
