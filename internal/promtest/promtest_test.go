package promtest

import (
	"os"
	"path/filepath"
	"testing"
)

func TestParse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.prom")
	text := "# TYPE certpush_hosts gauge\ncertpush_hosts{result=\"would_push\"} 2\n"
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	fams := Parse(t, path)
	m := fams["certpush_hosts"].GetMetric()
	if len(m) != 1 || m[0].GetGauge().GetValue() != 2 || m[0].GetLabel()[0].GetValue() != "would_push" {
		t.Errorf("certpush_hosts = %v", fams["certpush_hosts"])
	}
}
