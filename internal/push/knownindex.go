package push

import (
	"slices"
	"strings"
)

// knownIndex finds the known_hosts lines that may match a host without
// looking at every line: a line whose host field is a list of plain names
// (no wildcard, no negation, not hashed) can only match a host by one of
// those names, so it is found by name; every other line is tried for
// every host. With a line per host, checking a host is then a few map
// lookups instead of a pass over the whole file (for 100,000 hosts, a
// pass per host is 10^10 comparisons). Lines are still matched with
// matchHost: the index only leaves out lines that cannot match.
type knownIndex struct {
	head  map[string]int32 // lowercased name -> first entry
	line  []int32          // entry -> line index
	next  []int32          // entry -> next entry with the same name, or -1
	other []int32          // lines tried for every host, in file order
}

func newKnownIndex(lines []knownLine) *knownIndex {
	x := &knownIndex{head: make(map[string]int32, len(lines))}
	for i, l := range lines {
		if !plainPatterns(l.patterns) {
			x.other = append(x.other, int32(i))
			continue
		}
		for p := range strings.SplitSeq(l.patterns, ",") {
			p = strings.ToLower(p)
			e := int32(len(x.line))
			x.line = append(x.line, int32(i))
			n, ok := x.head[p]
			if !ok {
				n = -1
			}
			x.next = append(x.next, n)
			x.head[p] = e
		}
	}
	return x
}

// plainPatterns reports whether a host field is a comma-separated list of
// names with no pattern characters, negation or hashing.
func plainPatterns(patterns string) bool {
	return patterns != "" && !strings.HasPrefix(patterns, "|") && !strings.ContainsAny(patterns, "*?!")
}

// candidates returns the indexes of the lines that may match host, in
// file order, each once.
func (x *knownIndex) candidates(host hostNames) []int32 {
	out := slices.Clone(x.other)
	for _, name := range host {
		for e, ok := x.head[strings.ToLower(name)]; ok && e >= 0; e = x.next[e] {
			out = append(out, x.line[e])
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
