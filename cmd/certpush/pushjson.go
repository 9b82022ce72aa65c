package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"

	"github.com/certpush/certpush/internal/push"
)

// jsonResult is one host's result as push --json prints it.
type jsonResult struct {
	push.Result
	DurationMS int64 `json:"duration_ms"`
}

// jsonReport is one certificate's report as push --json prints it.
type jsonReport struct {
	certReport
	Results []jsonResult `json:"results"`
}

// writeReportsJSON prints {"certs": [...]} exactly as a json.Encoder with
// a two-space indent does, but one host result at a time through a
// buffer: the output of a push to 100,000 hosts is tens of MB, which is
// never held in memory (neither as a copy of every result nor as the
// encoded text, nor its indented copy).
func writeReportsJSON(out io.Writer, reports []certReport) error {
	w := bufio.NewWriterSize(out, 64<<10)
	if len(reports) == 0 {
		w.WriteString("{\n  \"certs\": []\n}\n")
		return w.Flush()
	}
	w.WriteString("{\n  \"certs\": [")
	for i, rep := range reports {
		if i > 0 {
			w.WriteByte(',')
		}
		w.WriteString("\n    ")
		// The report without its results: "results" is its last field,
		// so the encoding of an empty list ends it.
		head, err := json.MarshalIndent(jsonReport{certReport: rep, Results: []jsonResult{}}, "    ", "  ")
		if err != nil {
			return err
		}
		if len(rep.Results) == 0 {
			w.Write(head)
			continue
		}
		const empty = "\"results\": []\n    }"
		if !bytes.HasSuffix(head, []byte(empty)) {
			return errors.New("push report: results is not the last field")
		}
		w.Write(head[:len(head)-len(empty)])
		w.WriteString("\"results\": [")
		for j, r := range rep.Results {
			if j > 0 {
				w.WriteByte(',')
			}
			w.WriteString("\n        ")
			line, err := json.MarshalIndent(jsonResult{Result: r, DurationMS: r.Duration.Milliseconds()}, "        ", "  ")
			if err != nil {
				return err
			}
			if _, err := w.Write(line); err != nil {
				return err
			}
		}
		w.WriteString("\n      ]\n    }")
	}
	w.WriteString("\n  ]\n}\n")
	return w.Flush()
}
