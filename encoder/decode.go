package encoder

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/tidemark/tidemark/event"
)

// change is a decoded event with the columns of its after image that make up a product's
// text picked out (nil when absent).
type change struct {
	event.Change
	text textColumns
}

type textColumns struct {
	sku, name, description, attributes json.RawMessage
}

// decode parses and checks one message.
func decode(dec *event.Decoder, msg jetstream.Msg) (change, error) {
	return decodeChange(dec, msg.Data())
}

// decodeChange parses an event of either envelope and checks that the encoder can apply it;
// every error wraps [ErrPoison].
func decodeChange(dec *event.Decoder, data []byte) (change, error) {
	c, err := dec.Decode(data)
	if err != nil {
		return change{}, fmt.Errorf("%w: %w", ErrPoison, err)
	}
	ch := change{Change: c}
	for _, col := range c.After {
		switch col.Name {
		case "sku":
			ch.text.sku = col.Value
		case "name":
			ch.text.name = col.Value
		case "description":
			ch.text.description = col.Value
		case "attributes":
			ch.text.attributes = col.Value
		}
	}
	switch c.Op {
	case event.OpInsert, event.OpUpdate, event.OpSnapshot:
		if ch.text.name == nil && !slices.Contains(c.UnchangedToast, "name") {
			return ch, fmt.Errorf("%w: %s without a name", ErrPoison, c.Op)
		}
		fallthrough
	case event.OpDelete:
		if !validKey(c.Key) {
			return ch, fmt.Errorf("%w: missing or invalid key {supplier_id: %d, id: %d}", ErrPoison, c.Key.SupplierID, c.Key.ID)
		}
	case event.OpTruncate:
	case event.OpEpochOpen, event.OpEpochClose:
		if c.Epoch == nil || !validKey(event.Key{SupplierID: c.Epoch.SupplierID, ID: 1}) || c.Epoch.OpenLSN == 0 {
			return ch, fmt.Errorf("%w: %s without a valid epoch", ErrPoison, c.Op)
		}
	default:
		// An op event knows and this encoder does not apply.
		return ch, fmt.Errorf("%w: op %s is not handled by this encoder", ErrPoison, c.Op)
	}
	if c.Source.CommitLSN == 0 {
		return ch, fmt.Errorf("%w: no source.commit_lsn", ErrPoison)
	}
	return ch, nil
}

// validKey says whether k can be a product: products.supplier_id is an int4 and ids start at 1.
func validKey(k event.Key) bool {
	return k.SupplierID > 0 && k.SupplierID <= math.MaxInt32 && k.ID > 0
}
