package metrics_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certpush/certpush/internal/metrics"
	"github.com/certpush/certpush/internal/promtest"
)

func TestWriteFileParses(t *testing.T) {
	var s metrics.Set
	s.Gauge("certpush_cert_not_after_timestamp_seconds", "Not-after time of the current bundle.", metrics.Labels{"cert": "example.com"}, 1.7e9)
	s.Gauge("certpush_endpoint_aligned", "1 if the endpoint serves the current bundle.", metrics.Labels{"cert": "example.com", "host": "web-1", "endpoint": "10.0.0.1:443"}, 1)
	s.Gauge("certpush_endpoint_aligned", "ignored", metrics.Labels{"cert": "example.com", "host": `we"ird\host` + "\n", "endpoint": "[::1]:443"}, 0)
	s.Gauge("certpush_hosts", "Hosts by result.", nil, 3)
	path := filepath.Join(t.TempDir(), "certpush.prom")
	if err := s.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	fams := promtest.Parse(t, path)
	al := fams["certpush_endpoint_aligned"]
	if al == nil || len(al.Metric) != 2 {
		t.Fatalf("aligned family = %v", al)
	}
	var hosts []string
	for _, m := range al.Metric {
		for _, l := range m.Label {
			if l.GetName() == "host" {
				hosts = append(hosts, l.GetValue())
			}
		}
	}
	if strings.Join(hosts, ",") != "web-1,"+`we"ird\host`+"\n" {
		t.Errorf("host labels = %q", hosts)
	}
	if v := fams["certpush_cert_not_after_timestamp_seconds"].Metric[0].GetGauge().GetValue(); v != 1.7e9 {
		t.Errorf("not_after = %v", v)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", fi.Mode().Perm())
	}
}
