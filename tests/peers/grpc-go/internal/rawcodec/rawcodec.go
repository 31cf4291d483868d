// Package rawcodec is a gRPC codec that passes message bytes through untouched,
// so the test peers can speak `/echo.Echo/Who` (raw bytes, no protobuf) like the
// Python echo servers and clients in Gossamer's tests.
package rawcodec

import "fmt"

// Codec marshals []byte (or *[]byte) as is and unmarshals into *[]byte.
type Codec struct{}

// Marshal returns the bytes of v, which must be []byte or *[]byte.
func (Codec) Marshal(v any) ([]byte, error) {
	switch b := v.(type) {
	case []byte:
		return b, nil
	case *[]byte:
		return *b, nil
	}
	return nil, fmt.Errorf("rawcodec: cannot marshal %T", v)
}

// Unmarshal copies data into v, which must be *[]byte.
func (Codec) Unmarshal(data []byte, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("rawcodec: cannot unmarshal into %T", v)
	}
	*b = append((*b)[:0], data...)
	return nil
}

// Name is the content-subtype sent on the wire: application/grpc+raw.
func (Codec) Name() string { return "raw" }
