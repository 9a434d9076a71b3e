package main

import (
	"encoding/json"
	"fmt"
	"io"
)

// printJSON writes v as a report's --json output: one indented value on w, for a person as
// much as for jq. (load, snapshot and supplier list print theirs on one line, which scripts
// take with tail -n1.)
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("print json: %w", err)
	}
	return nil
}
