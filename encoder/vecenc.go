package encoder

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/tidemark/tidemark/event"
)

// float4Arrays is the real[] codec with a fast binary encoder for []float32: pgx's generic
// array path converts every element to an interface and asks whether it is a driver.Valuer,
// which took a quarter of an encoder's CPU at 384 floats a vector. Everything else (text
// format, scanning, other Go types) is the stock codec's.
type float4Arrays struct{ pgtype.Codec }

// useFloat4Arrays installs the codec on a connection's type map.
func useFloat4Arrays(m *pgtype.Map) {
	if t, ok := m.TypeForOID(pgtype.Float4ArrayOID); ok {
		if _, done := t.Codec.(float4Arrays); !done {
			m.RegisterType(&pgtype.Type{Name: t.Name, OID: t.OID, Codec: float4Arrays{t.Codec}})
		}
	}
}

func (c float4Arrays) PlanEncode(m *pgtype.Map, oid uint32, format int16, value any) pgtype.EncodePlan {
	if _, ok := value.([]float32); ok && format == pgtype.BinaryFormatCode {
		return float4ArrayPlan{}
	}
	return c.Codec.PlanEncode(m, oid, format, value)
}

type float4ArrayPlan struct{}

// Encode writes array_recv's format: dimensions, a has-nulls flag, the element type, then per
// dimension its length and lower bound, then each element as its length and its bits.
func (float4ArrayPlan) Encode(value any, buf []byte) ([]byte, error) {
	v := value.([]float32)
	if v == nil {
		return nil, nil // NULL
	}
	buf = binary.BigEndian.AppendUint32(buf, 1)
	buf = binary.BigEndian.AppendUint32(buf, 0)
	buf = binary.BigEndian.AppendUint32(buf, pgtype.Float4OID)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(v)))
	buf = binary.BigEndian.AppendUint32(buf, 1)
	for _, f := range v {
		buf = binary.BigEndian.AppendUint32(buf, 4)
		buf = binary.BigEndian.AppendUint32(buf, math.Float32bits(f))
	}
	return buf, nil
}

// binaryWriter is the codec of a type pgx does not know (pgvector's vector, pg_lsn) that the
// store COPYs in binary: it encodes one Go type in the type's binary (send/recv) format, and
// leaves everything else, queries and scans included, to the text format, as pgx treats an
// unregistered type. Its preferred format is text, so result columns of the type still come
// as text.
type binaryWriter struct {
	pgtype.TextCodec
	plan func(value any) pgtype.EncodePlan
}

func (c binaryWriter) FormatSupported(format int16) bool {
	return format == pgtype.TextFormatCode || format == pgtype.BinaryFormatCode
}

func (c binaryWriter) PreferredFormat() int16 { return pgtype.TextFormatCode }

func (c binaryWriter) PlanEncode(m *pgtype.Map, oid uint32, format int16, value any) pgtype.EncodePlan {
	if format == pgtype.BinaryFormatCode {
		return c.plan(value)
	}
	return c.TextCodec.PlanEncode(m, oid, format, value)
}

// vectorPlan writes []float32 in vector_recv's format: the dimension and a reserved zero as
// two int16s, then each element's bits, 4 + 4·dim bytes where real[]'s binary form takes
// 20 + 8·dim (every element carries its length).
type vectorPlan struct{}

func (vectorPlan) Encode(value any, buf []byte) ([]byte, error) {
	v := value.([]float32)
	if v == nil {
		return nil, nil // NULL
	}
	if len(v) > math.MaxUint16 {
		return nil, fmt.Errorf("vector of %d dimensions: pgvector takes at most %d", len(v), math.MaxUint16)
	}
	buf = binary.BigEndian.AppendUint16(buf, uint16(len(v)))
	buf = binary.BigEndian.AppendUint16(buf, 0)
	for _, f := range v {
		buf = binary.BigEndian.AppendUint32(buf, math.Float32bits(f))
	}
	return buf, nil
}

// lsnPlan writes an [event.LSN] as pg_lsn_recv reads it: a big-endian uint64.
type lsnPlan struct{}

func (lsnPlan) Encode(value any, buf []byte) ([]byte, error) {
	return binary.BigEndian.AppendUint64(buf, uint64(value.(event.LSN))), nil
}

// pgLSNOID is pg_lsn's fixed OID.
const pgLSNOID = 3220

// useBinaryWriters installs, on a connection's type map, the binary encoders of vectors
// (with the vector type's OID, 0 when pgvector is not in use) and of LSNs.
func useBinaryWriters(m *pgtype.Map, vectorOID uint32) {
	if _, done := m.TypeForOID(pgLSNOID); !done {
		m.RegisterType(&pgtype.Type{Name: "pg_lsn", OID: pgLSNOID, Codec: binaryWriter{plan: func(value any) pgtype.EncodePlan {
			if _, ok := value.(event.LSN); ok {
				return lsnPlan{}
			}
			return nil
		}}})
	}
	if vectorOID == 0 {
		return
	}
	if _, done := m.TypeForOID(vectorOID); !done {
		m.RegisterType(&pgtype.Type{Name: "vector", OID: vectorOID, Codec: binaryWriter{plan: func(value any) pgtype.EncodePlan {
			if _, ok := value.([]float32); ok {
				return vectorPlan{}
			}
			return nil
		}}})
	}
}
