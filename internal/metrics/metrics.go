// Package metrics writes Prometheus text-format files for node_exporter's
// textfile collector. Files are replaced atomically, so the collector never
// reads a half-written one.
package metrics

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/certpush/certpush/internal/atomicfile"
)

// Labels of a sample.
type Labels map[string]string

type sample struct {
	labels Labels
	value  float64
}

type family struct {
	name, help, typ string
	samples         []sample
}

// Set is a set of gauge families, written in the order they were first
// used. It is not safe for concurrent use.
type Set struct {
	families []*family
	byName   map[string]*family
}

// Gauge adds a sample to the gauge family name.
func (s *Set) Gauge(name, help string, labels Labels, value float64) {
	if s.byName == nil {
		s.byName = map[string]*family{}
	}
	f, ok := s.byName[name]
	if !ok {
		f = &family{name: name, help: help, typ: "gauge"}
		s.byName[name] = f
		s.families = append(s.families, f)
	}
	f.samples = append(f.samples, sample{labels: labels, value: value})
}

// Bool converts a condition to a gauge value.
func Bool(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Text renders the set in the Prometheus text exposition format.
func (s *Set) Text() string {
	var b strings.Builder
	for _, f := range s.families {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", f.name, escapeHelp(f.help), f.name, f.typ)
		for _, sm := range f.samples {
			b.WriteString(f.name)
			if len(sm.labels) > 0 {
				keys := make([]string, 0, len(sm.labels))
				for k := range sm.labels {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				b.WriteByte('{')
				for i, k := range keys {
					if i > 0 {
						b.WriteByte(',')
					}
					fmt.Fprintf(&b, "%s=\"%s\"", k, escapeLabel(sm.labels[k]))
				}
				b.WriteByte('}')
			}
			b.WriteByte(' ')
			b.WriteString(strconv.FormatFloat(sm.value, 'g', -1, 64))
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// WriteFile replaces path atomically with the set's text (mode 0644).
func (s *Set) WriteFile(path string) error {
	if err := atomicfile.WriteFile(path, []byte(s.Text()), 0o644); err != nil {
		return fmt.Errorf("write metrics: %w", err)
	}
	return nil
}

var (
	labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
)

func escapeLabel(s string) string { return labelEscaper.Replace(s) }
func escapeHelp(s string) string  { return helpEscaper.Replace(s) }

// WriteIfSet writes the set to path unless path is empty; a convenience for
// commands with an optional --metrics-file flag.
func (s *Set) WriteIfSet(path string) error {
	if path == "" {
		return nil
	}
	return s.WriteFile(path)
}
