// Package yamlconf checks configuration files written in YAML, one value
// at a time, so that a file with several mistakes is reported in full:
// values are read from the yaml.Node tree, and each problem found is
// recorded by a Checker, with its file and line, instead of ending the
// parse. Checker.Err then returns them all as one error of *Error values.
//
// The typed readers (Int, Port, Bool, Duration, Path, Items, Endpoints,
// Domains, ServerName) hold the one wording of each message; the checks
// under them (CheckDNSName, CheckAddress, CheckEndpoint, ParsePort) serve
// files that are not YAML, such as host lists.
package yamlconf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

// Checker reads values out of the YAML nodes of File and records what is
// wrong with them, as Problems in File. Problems of other files it names
// (host lists) may be added with Addf; Err reports File's first.
type Checker struct {
	// File is the file the nodes come from, named in every problem;
	// relative paths in it are resolved against its directory.
	File string

	// NoMerge makes Pairs refuse YAML merge keys (<<) instead of
	// applying them; MergeHint, when set, is appended to the refusal.
	NoMerge   bool
	MergeHint string

	Problems
}

// Err returns nil when nothing was wrong, else every problem as an
// *Error, joined with errors.Join: those of File first, then those of
// other files in the order they were first named, each file's in line
// order.
func (c *Checker) Err() error { return c.Problems.sorted(c.File) }

// report records a problem of File at line (0 for the file as a whole).
func (c *Checker) report(line int, msg string) { c.Addf(c.File, line, "%s", msg) }

// Pair is one key of a mapping, a plain string, and its value.
type Pair struct{ Key, Val *yaml.Node }

// Errorf reports a problem at the line of n (0 when n is nil).
func (c *Checker) Errorf(n *yaml.Node, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	c.Addf(c.File, line, format, args...)
}

// yamlLine is compiled on first use: only a syntax error needs it, and
// every certnode start would pay for it at init.
var yamlLine = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^yaml: line (\d+): (.*)$`) })

// syntaxError reports an error of the YAML decoder, at its line when it
// names one.
func (c *Checker) syntaxError(err error) {
	msg := err.Error()
	if m := yamlLine().FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		c.report(line, m[2])
		return
	}
	c.report(0, strings.TrimPrefix(msg, "yaml: "))
}

// Document decodes data, which must hold at most one YAML document, and
// returns its root node: nil for an empty document. It reports a syntax
// error or a second document and returns false.
func (c *Checker) Document(data []byte) (*yaml.Node, bool) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		c.syntaxError(err)
		return nil, false
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		c.Errorf(&extra, "more than one YAML document; put everything in one")
		return nil, false
	} else if !errors.Is(err, io.EOF) {
		c.syntaxError(err)
		return nil, false
	}
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		return doc.Content[0], true
	}
	return nil, true
}

// Deref follows aliases to the node they name; it gives up on a chain
// of more than 100.
func Deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// IsNull reports whether n is missing, empty or a YAML null.
func IsNull(n *yaml.Node) bool {
	return n == nil || n.Kind == 0 || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// Describe names what n is, for messages: "nothing", "a mapping",
// "a list", "an alias", or a scalar's quoted value.
func Describe(n *yaml.Node) string {
	switch {
	case IsNull(n):
		return "nothing"
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.Kind == yaml.AliasNode:
		return "an alias"
	}
	return strconv.Quote(n.Value)
}

// Label names a place in the file for messages: where, or "top level"
// for "".
func Label(where string) string {
	if where == "" {
		return "top level"
	}
	return where
}

// Unknown reports key as unknown in where ("" for the top level),
// suggesting the word of known it is likely a typo of.
func (c *Checker) Unknown(key *yaml.Node, where string, known []string) {
	msg := fmt.Sprintf("unknown key %q", key.Value)
	if where != "" {
		msg += " in " + where
	}
	if s := Closest(key.Value, known); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	c.Errorf(key, "%s", msg)
}

// Closest returns the word of known nearest to w when it is near enough
// (fewer than 3 edits) to be a likely typo, else "".
func Closest(w string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if d := distance(w, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// distance is the Levenshtein distance of a and b in bytes; inputs longer
// than 64 bytes are 99 apart.
func distance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 99
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Pairs returns the keys and values of the mapping n, in order; where
// names it in messages ("" for the top level). Null is an empty mapping.
// Keys that are not plain strings, and duplicate keys, are reported and
// left out. YAML merge keys (<<) are applied, keys written in the mapping
// winning over merged ones, unless NoMerge is set: then they are reported
// and left out.
func (c *Checker) Pairs(n *yaml.Node, where string) []Pair {
	n = Deref(n)
	if IsNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		c.Errorf(n, "%s: want a mapping, got %s", Label(where), Describe(n))
		return nil
	}
	var out []Pair
	c.collect(n, where, &out, map[string]bool{}, map[*yaml.Node]bool{n: true}, 0)
	return out
}

// collect appends the pairs of n not yet seen, then those of the mappings
// it merges; each mapping is visited once.
func (c *Checker) collect(n *yaml.Node, where string, out *[]Pair, seen map[string]bool, visited map[*yaml.Node]bool, depth int) {
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := Deref(n.Content[i]), n.Content[i+1]
		if k == nil || k.Kind != yaml.ScalarNode {
			c.Errorf(n.Content[i], "%s: a key must be a plain string, got %s", Label(where), Describe(k))
			continue
		}
		if k.ShortTag() == "!!merge" {
			if c.NoMerge {
				msg := "merge keys (<<) are not supported"
				if c.MergeHint != "" {
					msg += "; " + c.MergeHint
				}
				c.Errorf(k, "%s: %s", Label(where), msg)
				continue
			}
			merges = append(merges, v)
			continue
		}
		if seen[k.Value] {
			if depth == 0 {
				c.Errorf(k, "duplicate key %q in %s", k.Value, Label(where))
			}
			continue
		}
		seen[k.Value] = true
		*out = append(*out, Pair{k, v})
	}
	for _, m := range merges {
		m = Deref(m)
		if depth >= 8 {
			c.Errorf(m, "%s: merge (<<) nested too deep", Label(where))
			return
		}
		switch {
		case m != nil && m.Kind == yaml.MappingNode:
			if !visited[m] {
				visited[m] = true
				c.collect(m, where, out, seen, visited, depth+1)
			}
		case m != nil && m.Kind == yaml.SequenceNode:
			for _, e := range m.Content {
				if e = Deref(e); e != nil && e.Kind == yaml.MappingNode {
					if !visited[e] {
						visited[e] = true
						c.collect(e, where, out, seen, visited, depth+1)
					}
				} else {
					c.Errorf(e, "%s: merge (<<) wants a mapping or a list of mappings, got %s", Label(where), Describe(e))
				}
			}
		default:
			c.Errorf(m, "%s: merge (<<) wants a mapping or a list of mappings, got %s", Label(where), Describe(m))
		}
	}
}

// Scalar returns n, after aliases, when it is a scalar (null included);
// key names it in messages.
func (c *Checker) Scalar(n *yaml.Node, key string) (*yaml.Node, bool) {
	n = Deref(n)
	if n == nil || n.Kind != yaml.ScalarNode {
		c.Errorf(n, "%s: want a single value, got %s", key, Describe(n))
		return nil, false
	}
	return n, true
}

// Text returns a scalar's text, "" for null. Control characters other
// than tab are refused.
func (c *Checker) Text(n *yaml.Node, key string) (string, bool) {
	s, ok := c.Scalar(n, key)
	if !ok {
		return "", false
	}
	if IsNull(s) {
		return "", true
	}
	if strings.ContainsFunc(s.Value, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }) {
		c.Errorf(s, "%s: control characters are not allowed", key)
		return "", false
	}
	return s.Value, true
}

// NonEmpty is Text, refusing a value that is empty or all white space.
func (c *Checker) NonEmpty(n *yaml.Node, key string) (string, bool) {
	s, ok := c.Text(n, key)
	if ok && strings.TrimSpace(s) == "" {
		c.Errorf(Deref(n), "%s: must not be empty", key)
		return "", false
	}
	return s, ok
}

// OneOf is NonEmpty, refusing a value that is not one of allowed with
// "unknown WHAT "v" (use a or b)".
func (c *Checker) OneOf(n *yaml.Node, key, what string, allowed ...string) (string, bool) {
	v, ok := c.NonEmpty(n, key)
	if ok && !slices.Contains(allowed, v) {
		list := strings.Join(allowed, ", ")
		if len(allowed) == 2 {
			list = allowed[0] + " or " + allowed[1]
		}
		c.Errorf(Deref(n), "%s: unknown %s %q (use %s)", key, what, v, list)
		return "", false
	}
	return v, ok
}

// Seq returns the items of the sequence n, as written; null is an empty
// list.
func (c *Checker) Seq(n *yaml.Node, key string) ([]*yaml.Node, bool) {
	n = Deref(n)
	if IsNull(n) {
		return nil, true
	}
	if n.Kind != yaml.SequenceNode {
		c.Errorf(n, "%s: want a list, got %s", key, Describe(n))
		return nil, false
	}
	return n.Content, true
}
