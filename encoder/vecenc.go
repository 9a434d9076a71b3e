package encoder

import (
	"encoding/binary"
	"math"

	"github.com/jackc/pgx/v5/pgtype"
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
