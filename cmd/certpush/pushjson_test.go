package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/certpush/certpush/internal/push"
)

// TestReportsJSONStream: the streamed push --json output is byte for
// byte what one json.Encoder with a two-space indent writes of the whole
// report, for no certificate, a certificate without hosts, and several
// with results, messages, renewal times and characters JSON escapes.
func TestReportsJSONStream(t *testing.T) {
	due := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	full := []certReport{
		{Cert: "a.test", BundleID: "0123456789abcdef", Results: []push.Result{
			{Host: "n1", Wave: "canary", Address: "10.0.0.1:22", Result: push.Installed, Duration: 1500 * time.Millisecond, BundleID: "0123456789abcdef", Detail: "serves <x> & \"y\""},
			{Host: "n2", Wave: "rest", Address: "10.0.0.2:22", Result: push.Failed, Err: errors.New("boom"), ErrorText: "connect: refused\n\tline two \u2028"},
		}},
		{Cert: "b.test", BundleID: "fedcba9876543210", Message: "no hosts selected"},
		{Cert: "c.test", BundleID: "fedcba9876543211", RenewalDue: &due, Results: []push.Result{{Host: "n3", Result: push.Unchanged}}},
	}
	for _, reports := range [][]certReport{nil, full[1:2], full} {
		var got bytes.Buffer
		if err := writeReportsJSON(&got, reports); err != nil {
			t.Fatal(err)
		}
		out := make([]jsonReport, 0, len(reports))
		for _, rep := range reports {
			jr := jsonReport{certReport: rep, Results: []jsonResult{}}
			for _, r := range rep.Results {
				jr.Results = append(jr.Results, jsonResult{Result: r, DurationMS: r.Duration.Milliseconds()})
			}
			out = append(out, jr)
		}
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetIndent("", "  ")
		if err := enc.Encode(map[string]any{"certs": out}); err != nil {
			t.Fatal(err)
		}
		if got.String() != want.String() {
			t.Errorf("%d reports: streamed output differs\n got: %s\nwant: %s", len(reports), got.String(), want.String())
		}
	}
}
