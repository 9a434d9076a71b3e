package event_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tidemark/tidemark/event"
)

// follow keeps the current row of every product in products, from the PRODUCTS stream in
// either envelope, until ctx is done. Events older than what it applied are dropped.
func follow(ctx context.Context, nc *nats.Conn, products map[event.Key]event.Row) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, "PRODUCTS", jetstream.ConsumerConfig{
		Durable:   "my-catalogue-copy",
		AckPolicy: jetstream.AckExplicitPolicy,
	})
	if err != nil {
		return err
	}
	var (
		dec       event.Decoder
		applied   = map[event.Key]event.Position{}
		truncated event.Position
	)
	// Consume calls the handler for one message at a time.
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		ch, err := dec.Decode(msg.Data())
		switch {
		case errors.Is(err, event.ErrUnknownOp):
			_ = msg.Ack() // a kind of event this code does not follow
			return
		case err != nil:
			_ = msg.TermWithReason(err.Error()) // it never decodes: no redelivery
			return
		}
		pos := ch.Position()
		if last, ok := applied[ch.Key]; (ok && pos.Compare(last) <= 0) || pos.Compare(truncated) <= 0 {
			_ = msg.Ack() // a redelivery or a replay of what is already applied
			return
		}
		switch ch.Op {
		case event.OpDelete:
			delete(products, ch.Key)
		case event.OpTruncate:
			clear(products)
			truncated = pos
		case event.OpEpochOpen: // a full snapshot of a supplier begins: nothing to do yet
		case event.OpEpochClose:
			// The snapshot is complete: a product of its supplier that no event carried
			// since the open is gone (its delete was lost, for instance with a slot).
			for k := range products {
				if k.SupplierID == ch.Epoch.SupplierID && ch.Epoch.Stale(applied[k]) {
					delete(products, k)
				}
			}
		default: // insert, update, snapshot
			row := ch.After
			for _, name := range ch.UnchangedToast { // not sent: keep the value we have
				if v, ok := products[ch.Key].Get(name); ok {
					row = append(row, event.Column{Name: name, Value: v})
				}
			}
			if old, ok := ch.Before.Key(); ok && old != ch.Key {
				delete(products, old) // the update moved the product to a new key
				applied[old] = pos
			}
			products[ch.Key] = row
		}
		applied[ch.Key] = pos
		_ = msg.Ack()
	})
	if err != nil {
		return err
	}
	<-ctx.Done()
	cc.Stop()
	<-cc.Closed()
	return nil
}

// A subscriber that keeps its own copy of the catalogue (the README's example).
func Example_follow() {
	nc, err := nats.Connect(nats.DefaultURL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	products := map[event.Key]event.Row{}
	if err := follow(ctx, nc, products); err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(products), "products")
}
