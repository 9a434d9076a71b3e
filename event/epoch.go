package event

import (
	"encoding/base64"
	"fmt"
	"math"
)

// epoch reads the epoch object of a native event, or the content of a Debezium message event.
func (d *Decoder) epoch(s *scanner, what string) (*Epoch, error) {
	if s.null() {
		return nil, nil
	}
	e := &Epoch{}
	var hasID, hasSupplier, hasOpen bool
	err := s.object(what, func(name []byte) error {
		var err error
		switch string(name) {
		case "id":
			hasID = true
			e.ID, err = d.text(s, what+".id")
		case "supplier_id":
			hasSupplier = true
			e.SupplierID, err = s.int(what+".supplier_id", math.MinInt64, math.MaxInt64)
		case "open_lsn":
			hasOpen = true
			e.OpenLSN, err = d.lsn(s, what+".open_lsn")
		case "rows":
			e.Rows, err = s.int(what+".rows", 0, math.MaxInt64)
		default:
			_, err = s.value(what)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if !hasID || !hasSupplier || !hasOpen {
		return nil, s.errorf(what, "want id, supplier_id and open_lsn")
	}
	return e, nil
}

// message reads the message object of a Debezium message event ("op":"m"): the prefix says
// which epoch event it is, the content (base64) holds the epoch. A prefix that is not
// tidemark's leaves op empty.
func (d *Decoder) message(s *scanner, w *wire) error {
	if s.null() {
		return nil
	}
	var content []byte
	err := s.object("message", func(name []byte) error {
		switch string(name) {
		case "prefix":
			raw, _, err := s.str("message.prefix")
			if err != nil {
				return err
			}
			switch string(raw) {
			case DebeziumEpochOpenPrefix:
				w.messageOp = OpEpochOpen
			case DebeziumEpochClosePrefix:
				w.messageOp = OpEpochClose
			default:
				w.messagePrefix = string(raw)
			}
		case "content":
			raw, escaped, err := s.str("message.content")
			if err != nil {
				return err
			}
			if escaped {
				return s.errorf("message.content", "want base64")
			}
			if content, err = base64.StdEncoding.AppendDecode(nil, raw); err != nil {
				return s.errorf("message.content", "want base64: %v", err)
			}
		default:
			_, err := s.value("message")
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	if w.messageOp == "" || content == nil {
		return nil
	}
	cs := scanner{data: content}
	if cs.peek() != '{' {
		return fmt.Errorf("%w: message.content: want a JSON object", ErrMalformed)
	}
	if w.epoch, err = d.epoch(&cs, "message.content"); err != nil {
		return err
	}
	if !cs.atEnd() {
		return cs.errorf("message.content", "data after the epoch")
	}
	return nil
}
