package bench

import (
	"bytes"
	_ "embed"
	"fmt"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Schema is the bench output schema (a copy of ../shared/bench.schema.json; a test
// keeps the two equal where shared/ is present).
//
//go:embed schema.json
var Schema []byte

var compiled = sync.OnceValues(func() (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(Schema))
	if err != nil {
		return nil, fmt.Errorf("read bench schema: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("bench.schema.json", doc); err != nil {
		return nil, fmt.Errorf("load bench schema: %w", err)
	}
	s, err := c.Compile("bench.schema.json")
	if err != nil {
		return nil, fmt.Errorf("compile bench schema: %w", err)
	}
	return s, nil
})

// Validate checks a JSON document against Schema.
func Validate(doc []byte) error {
	s, err := compiled()
	if err != nil {
		return err
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return fmt.Errorf("bench document is not JSON: %w", err)
	}
	if err := s.Validate(v); err != nil {
		return fmt.Errorf("bench document does not match the schema: %w", err)
	}
	return nil
}
