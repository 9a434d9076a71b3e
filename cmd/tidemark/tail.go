package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TailCmd is `tidemark tail`: print events of the change stream as they arrive, one JSON
// document per line on stdout.
type TailCmd struct {
	Subject   string `arg:"" optional:"" default:"${subjects}" help:"Subject filter, e.g. products.42.> or products.*.delete."`
	Stream    string `default:"${stream}" help:"Stream of change events."`
	FromStart bool   `name:"from-start" help:"Print the stream from its first message instead of only new ones."`
}

// Run prints events until interrupted.
func (c *TailCmd) Run(ctx context.Context, g *Globals, log *slog.Logger) error {
	nc, err := g.NATSConn(log, "tail")
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	policy := jetstream.DeliverNewPolicy
	if c.FromStart {
		policy = jetstream.DeliverAllPolicy
	}
	var cons jetstream.Consumer
	for {
		cons, err = js.OrderedConsumer(ctx, c.Stream, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{c.Subject}, DeliverPolicy: policy,
		})
		if err == nil {
			break
		}
		if !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("consume %s: %w", c.Stream, err)
		}
		log.Info("waiting for the stream to appear", "stream", c.Stream)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("consume %s: %w", c.Stream, err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	out := bufio.NewWriterSize(os.Stdout, 64<<10)
	defer out.Flush()
	for {
		msg, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) || ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("next message: %w", err)
		}
		out.Write(msg.Data())
		out.WriteByte('\n')
		if err := out.Flush(); err != nil {
			return fmt.Errorf("write stdout: %w", err)
		}
	}
}
