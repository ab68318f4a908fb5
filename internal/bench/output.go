package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// writeResult prints v as a two-column table (nested keys joined with
// "."), and with asJSON also as one JSON object on the last line.
func writeResult(w io.Writer, v any, asJSON bool) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding the result: %w", err)
	}
	rows, err := flatten(data)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\n", r[0], r[1])
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing the table: %w", err)
	}
	if asJSON {
		if _, err := fmt.Fprintf(w, "%s\n", data); err != nil {
			return fmt.Errorf("writing the JSON result: %w", err)
		}
	}
	return nil
}

// flatten lists the leaves of a JSON object in document order as
// (dotted key, value) pairs.
func flatten(data []byte) ([][2]string, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var rows [][2]string
	var walk func(prefix string) error
	walk = func(prefix string) error {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("reading the result: %w", err)
		}
		if d, ok := tok.(json.Delim); ok && d == '{' {
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return fmt.Errorf("reading the result: %w", err)
				}
				key, _ := kt.(string)
				if prefix != "" {
					key = prefix + "." + key
				}
				if err := walk(key); err != nil {
					return err
				}
			}
			_, err := dec.Token() // '}'
			return err
		}
		if d, ok := tok.(json.Delim); ok && d == '[' {
			var parts []string
			for dec.More() {
				var x any
				if err := dec.Decode(&x); err != nil {
					return fmt.Errorf("reading the result: %w", err)
				}
				parts = append(parts, fmt.Sprint(x))
			}
			_, err := dec.Token() // ']'
			rows = append(rows, [2]string{prefix, strings.Join(parts, ", ")})
			return err
		}
		rows = append(rows, [2]string{prefix, fmt.Sprint(tok)})
		return nil
	}
	if err := walk(""); err != nil {
		return nil, err
	}
	return rows, nil
}
