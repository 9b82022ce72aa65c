package yamlconf

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// recorder is a Checker whose problems are read back as "line: msg", in
// the order they were reported.
type recorder struct {
	Checker
}

func newRecorder() *recorder { return &recorder{Checker{File: "f.yaml"}} }

func (r *recorder) got() []string {
	var out []string
	for _, e := range r.list {
		out = append(out, fmt.Sprintf("%d: %s", e.Line, e.Msg))
	}
	return out
}

// node parses src and returns the value of its top-level key "v", or the
// root when there is no such key.
func node(t *testing.T, src string) *yaml.Node {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatalf("parse %q: %v", src, err)
	}
	if len(doc.Content) == 0 {
		return nil
	}
	root := doc.Content[0]
	if root.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(root.Content); i += 2 {
			if root.Content[i].Value == "v" {
				return root.Content[i+1]
			}
		}
	}
	return root
}

func check(t *testing.T, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("reported\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestDocument(t *testing.T) {
	tests := []struct {
		desc     string
		src      string
		wantKind yaml.Kind // 0: no root
		ok       bool
		want     []string
	}{
		{desc: "mapping", src: "a: 1\n", wantKind: yaml.MappingNode, ok: true},
		{desc: "empty", src: "", ok: true},
		{desc: "comment only", src: "# nothing\n", ok: true},
		{desc: "syntax error with line", src: "a: 1\nb: [\n", want: []string{"2: did not find expected node content"}},
		{desc: "two documents", src: "a: 1\n---\nb: 2\n", want: []string{"2: more than one YAML document; put everything in one"}},
		{desc: "syntax error in second document", src: "a: 1\n---\nb: [\n", want: []string{"3: did not find expected node content"}},
		{desc: "error without line", src: "a: *x\n", want: []string{"0: unknown anchor 'x' referenced"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			r := newRecorder()
			root, ok := r.Document([]byte(tc.src))
			if ok != tc.ok {
				t.Errorf("ok = %v, want %v", ok, tc.ok)
			}
			var kind yaml.Kind
			if root != nil {
				kind = root.Kind
			}
			if kind != tc.wantKind {
				t.Errorf("root kind = %v, want %v", kind, tc.wantKind)
			}
			check(t, r.got(), tc.want)
		})
	}
}

func TestPairs(t *testing.T) {
	tests := []struct {
		desc    string
		src     string
		where   string
		noMerge bool
		hint    string
		keys    string // "key=value ..." of the pairs returned
		want    []string
	}{
		{desc: "mapping in order", src: "v: {b: 1, a: 2}", where: "x", keys: "b=1 a=2"},
		{desc: "null is empty", src: "v: ~", where: "x"},
		{desc: "missing is empty", src: "", where: "x"},
		{desc: "not a mapping", src: "v: [1]", where: "x", want: []string{"1: x: want a mapping, got a list"}},
		{desc: "scalar at top level", src: "5", want: []string{"1: top level: want a mapping, got \"5\""}},
		{desc: "alias to a mapping", src: "m: &m {a: 1}\nv: *m", where: "x", keys: "a=1"},
		{desc: "duplicate key", src: "v:\n  a: 1\n  a: 2\n", where: "x", keys: "a=1", want: []string{"3: duplicate key \"a\" in x"}},
		{desc: "key not a string", src: "v:\n  [1]: 2\n  b: 3\n", where: "x", keys: "b=3", want: []string{"2: x: a key must be a plain string, got a list"}},
		{desc: "merge applied, written keys win", src: "m: &m {a: 1, b: 2}\nv: {<<: *m, b: 3}", where: "x", keys: "b=3 a=1"},
		{desc: "merge of a list of mappings", src: "m: &m {a: 1}\nn: &n {a: 2, c: 3}\nv: {<<: [*m, *n]}", where: "x", keys: "a=1 c=3"},
		{desc: "merge of a scalar", src: "v: {<<: 1, a: 2}", where: "x", keys: "a=2", want: []string{"1: x: merge (<<) wants a mapping or a list of mappings, got \"1\""}},
		{desc: "merge list holding a scalar", src: "v:\n  <<: [1]\n", where: "x", want: []string{"2: x: merge (<<) wants a mapping or a list of mappings, got \"1\""}},
		{
			desc:  "merge nested too deep",
			src:   "v: {<<: {<<: {<<: {<<: {<<: {<<: {<<: {<<: {<<: {a: 1}}}}}}}}}}",
			where: "x",
			want:  []string{"1: x: merge (<<) nested too deep"},
		},
		{desc: "merged duplicates are not reported", src: "m: &m {a: 1}\nv: {<<: [*m, *m], a: 2}", where: "x", keys: "a=2"},
		{desc: "merge refused", src: "m: &m {a: 1}\nv:\n  <<: *m\n  b: 2\n", where: "x", noMerge: true, keys: "b=2", want: []string{"3: x: merge keys (<<) are not supported"}},
		{desc: "merge refused with hint", src: "m: &m {a: 1}\nv: {<<: *m}", noMerge: true, hint: "use defaults", want: []string{"2: top level: merge keys (<<) are not supported; use defaults"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			r := newRecorder()
			r.NoMerge, r.MergeHint = tc.noMerge, tc.hint
			var keys []string
			for _, p := range r.Pairs(node(t, tc.src), tc.where) {
				keys = append(keys, p.Key.Value+"="+Deref(p.Val).Value)
			}
			if got := strings.Join(keys, " "); got != tc.keys {
				t.Errorf("pairs %q, want %q", got, tc.keys)
			}
			check(t, r.got(), tc.want)
		})
	}
}

func TestUnknown(t *testing.T) {
	known := []string{"reload", "test", "verify", "verify_sni"}
	tests := []struct {
		desc  string
		key   string
		where string
		known []string
		want  string
	}{
		{desc: "typo", key: "relaod", where: "certs.a", known: known, want: `unknown key "relaod" in certs.a (did you mean "reload"?)`},
		{desc: "top level", key: "tset", known: known, want: `unknown key "tset" (did you mean "test"?)`},
		{desc: "too far off", key: "hostz", where: "certs.a", known: known, want: `unknown key "hostz" in certs.a`},
		{desc: "no known keys", key: "hostz", where: "certs.example.com", want: `unknown key "hostz" in certs.example.com`},
		{desc: "nearest wins", key: "verify_sn", known: known, want: `unknown key "verify_sn" (did you mean "verify_sni"?)`},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			r := newRecorder()
			r.Unknown(&yaml.Node{Kind: yaml.ScalarNode, Value: tc.key, Line: 12}, tc.where, tc.known)
			check(t, r.got(), []string{"12: " + tc.want})
		})
	}
}

func TestClosest(t *testing.T) {
	tests := []struct {
		desc  string
		word  string
		known []string
		want  string
	}{
		{desc: "exact", word: "keep", want: "keep"},
		{desc: "one edit", word: "cert", want: "certs"},
		{desc: "two edits", word: "crts0", want: "certs"},
		{desc: "transposition is two edits", word: "kepe", want: "keep"},
		{desc: "three edits", word: "xyzs", want: ""},
		{desc: "first of equals", word: "aa", known: []string{"ab", "ba"}, want: "ab"},
		{desc: "no known words", word: "keep", known: []string{}, want: ""},
		{desc: "empty", word: "", want: ""},
		{desc: "long words are never near", word: strings.Repeat("k", 65), want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			known := tc.known
			if known == nil {
				known = []string{"certs", "keep", "lock", "root"}
			}
			if got := Closest(tc.word, known); got != tc.want {
				t.Errorf("Closest(%q) = %q, want %q", tc.word, got, tc.want)
			}
		})
	}
}

func TestDistance(t *testing.T) {
	tests := []struct {
		desc string
		a, b string
		want int
	}{
		{desc: "same", a: "abc", b: "abc", want: 0},
		{desc: "empty", a: "", b: "abc", want: 3},
		{desc: "substitution", a: "abc", b: "abd", want: 1},
		{desc: "insertion", a: "ac", b: "abc", want: 1},
		{desc: "kitten", a: "kitten", b: "sitting", want: 3},
		{desc: "capped", a: strings.Repeat("a", 65), b: "a", want: 99},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			if got := distance(tc.a, tc.b); got != tc.want {
				t.Errorf("distance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
			}
		})
	}
}

func TestDescribe(t *testing.T) {
	tests := []struct {
		desc string
		src  string
		want string
	}{
		{desc: "missing", src: "", want: "nothing"},
		{desc: "null", src: "v: ~", want: "nothing"},
		{desc: "empty value", src: "v:", want: "nothing"},
		{desc: "mapping", src: "v: {a: 1}", want: "a mapping"},
		{desc: "list", src: "v: [1]", want: "a list"},
		{desc: "alias", src: "m: &m 1\nv: *m", want: "an alias"},
		{desc: "scalar", src: "v: \"a\\tb\"", want: `"a\tb"`},
		{desc: "quoted null", src: "v: \"~\"", want: `"~"`},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			if got := Describe(node(t, tc.src)); got != tc.want {
				t.Errorf("Describe = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestDeref(t *testing.T) {
	target := &yaml.Node{Kind: yaml.ScalarNode, Value: "x"}
	a1 := &yaml.Node{Kind: yaml.AliasNode, Alias: target}
	a2 := &yaml.Node{Kind: yaml.AliasNode, Alias: a1}
	loop := &yaml.Node{Kind: yaml.AliasNode}
	loop.Alias = loop
	tests := []struct {
		desc string
		in   *yaml.Node
		want *yaml.Node
	}{
		{desc: "nil", in: nil, want: nil},
		{desc: "not an alias", in: target, want: target},
		{desc: "chain", in: a2, want: target},
		{desc: "loop gives up", in: loop, want: loop},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			if got := Deref(tc.in); got != tc.want {
				t.Errorf("Deref = %p, want %p", got, tc.want)
			}
		})
	}
}

func TestLabel(t *testing.T) {
	if got := Label(""); got != "top level" {
		t.Errorf("Label(\"\") = %q", got)
	}
	if got := Label("certs.a"); got != "certs.a" {
		t.Errorf("Label(\"certs.a\") = %q", got)
	}
}

func TestValues(t *testing.T) {
	tests := []struct {
		desc string
		src  string
		fn   string // Scalar, Text, NonEmpty
		val  string
		ok   bool
		want []string
	}{
		{desc: "scalar", src: "v: 12", fn: "Scalar", val: "12", ok: true},
		{desc: "scalar through alias", src: "m: &m 12\nv: *m", fn: "Scalar", val: "12", ok: true},
		{desc: "scalar null", src: "v: ~", fn: "Scalar", val: "~", ok: true},
		{desc: "scalar of a list", src: "v: [1]", fn: "Scalar", want: []string{"1: k: want a single value, got a list"}},
		{desc: "scalar missing", src: "", fn: "Scalar", want: []string{"0: k: want a single value, got nothing"}},
		{desc: "text", src: "v: a b", fn: "Text", val: "a b", ok: true},
		{desc: "text null", src: "v: ~", fn: "Text", val: "", ok: true},
		{desc: "text tab", src: "v: \"a\\tb\"", fn: "Text", val: "a\tb", ok: true},
		{desc: "text control", src: "v: \"a\\x01b\"", fn: "Text", want: []string{"1: k: control characters are not allowed"}},
		{desc: "text delete", src: "v: \"a\\x7fb\"", fn: "Text", want: []string{"1: k: control characters are not allowed"}},
		{desc: "text of a mapping", src: "v: {a: 1}", fn: "Text", want: []string{"1: k: want a single value, got a mapping"}},
		{desc: "non-empty", src: "v: x", fn: "NonEmpty", val: "x", ok: true},
		{desc: "non-empty blank", src: "v: \"  \"", fn: "NonEmpty", want: []string{"1: k: must not be empty"}},
		{desc: "non-empty null", src: "v: ~", fn: "NonEmpty", want: []string{"1: k: must not be empty"}},
		{desc: "non-empty through alias", src: "m: &m \"\"\nv:\n  *m", fn: "NonEmpty", want: []string{"1: k: must not be empty"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			r := newRecorder()
			n := node(t, tc.src)
			var val string
			var ok bool
			switch tc.fn {
			case "Scalar":
				var s *yaml.Node
				if s, ok = r.Scalar(n, "k"); s != nil {
					val = s.Value
				}
			case "Text":
				val, ok = r.Text(n, "k")
			case "NonEmpty":
				val, ok = r.NonEmpty(n, "k")
			}
			if val != tc.val || ok != tc.ok {
				t.Errorf("%s = %q, %v; want %q, %v", tc.fn, val, ok, tc.val, tc.ok)
			}
			check(t, r.got(), tc.want)
		})
	}
}

func TestSeq(t *testing.T) {
	tests := []struct {
		desc  string
		src   string
		items string
		ok    bool
		want  []string
	}{
		{desc: "list", src: "v: [a, [b], c]", items: "a,,c", ok: true},
		{desc: "null", src: "v: ~", ok: true},
		{desc: "missing", src: "", ok: true},
		{desc: "alias", src: "m: &m [a]\nv: *m", items: "a", ok: true},
		{desc: "scalar", src: "v: a", want: []string{`1: k: want a list, got "a"`}},
		{desc: "mapping", src: "v:\n  a: 1\n", want: []string{"2: k: want a list, got a mapping"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			r := newRecorder()
			items, ok := r.Seq(node(t, tc.src), "k")
			var vals []string
			for _, it := range items {
				vals = append(vals, it.Value)
			}
			if got := strings.Join(vals, ","); got != tc.items || ok != tc.ok {
				t.Errorf("Seq = %q, %v; want %q, %v", got, ok, tc.items, tc.ok)
			}
			check(t, r.got(), tc.want)
		})
	}
}

func TestErrorf(t *testing.T) {
	r := newRecorder()
	r.Errorf(&yaml.Node{Line: 7}, "%s: %d", "a", 1)
	r.Errorf(nil, "whole file")
	check(t, r.got(), []string{"7: a: 1", "0: whole file"})
}

func TestCompareLines(t *testing.T) {
	tests := []struct {
		desc string
		a, b int
		want int
	}{
		{desc: "earlier line first", a: 3, b: 12, want: -1},
		{desc: "later line after", a: 12, b: 3, want: 1},
		{desc: "same line", a: 7, b: 7, want: 0},
		{desc: "no line after a line", a: 0, b: 99, want: 1},
		{desc: "a line before no line", a: 1, b: 0, want: -1},
		{desc: "both without a line", a: 0, b: 0, want: 0},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			if got := CompareLines(tc.a, tc.b); got != tc.want {
				t.Errorf("CompareLines(%d, %d) = %d, want %d", tc.a, tc.b, got, tc.want)
			}
		})
	}
}
