// Package promtest reads Prometheus text files in tests.
package promtest

import (
	"bytes"
	"os"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// Parse reads the Prometheus text file at path and returns its metric
// families by name. A file that is missing or does not parse fails the
// test, with the file's text.
func Parse(t testing.TB, path string) map[string]*dto.MetricFamily {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s does not parse: %v\n%s", path, err, data)
	}
	return fams
}
