package inventory

import (
	"bytes"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/certpush/certpush/internal/yamlconf"
)

// The hosts: block of a large inventory is most of the file, and
// yaml.v3's node tree of it is several times the size of the hosts it
// yields (about 2.7 KB a host entry). So when the file's layout allows
// it, the block is read a few entries at a time: the rest of the file
// is parsed with the block's lines left blank (line numbers unchanged),
// then the entries' lines are parsed on their own, entriesPerParse at a
// time, their tree's line numbers shifted back to the file's, turned
// into Hosts and dropped.
//
// The split is made on the source text, by indentation, and only where
// it cannot change what the file means: anything the splitter cannot
// prove safe (see splitHosts) and any part that does not parse on its
// own as exactly what it should be falls back to the parse of the whole
// file, which then reports whatever is wrong exactly as before.

// hostsBlock is the top-level hosts: block of a file, split into its
// entries.
type hostsBlock struct {
	keyLine int     // 1-based line of "hosts:"
	rest    []byte  // the file with the entries' lines left empty
	entries []chunk // in file order
	data    []byte  // the file
}

// chunk is one entry of the hosts: block: its source text, from the line
// of its key to the line before the next entry's key, comments and blank
// lines included.
type chunk struct {
	line       int // 1-based line of its first byte
	start, end int // byte offsets in the file
}

// entryStart reports whether c may start an entry's key: a plain key
// starting with a letter, digit or '_', or a quoted key. Anything else
// at the entries' indentation ('-', '?', ':', '&', '*', '!', '[', '{',
// '|', '>', '%', '@', '`', '.') is left to the whole-file parse.
func entryStart(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '"' || c == '\''
}

// splitHosts finds the top-level "hosts:" key of data (at column 0,
// nothing but a comment after the colon) and splits the block under it
// into entries. It returns false when there is no such block or its
// layout is one the split cannot be proved safe for:
//
//   - text that is not valid UTF-8 (the whole-file parse refuses it, and
//     blanking the block's lines could hide the bad bytes from it);
//   - a line break other than \n or \r\n (YAML also breaks lines at a
//     lone \r, NEL, LS and PS), a byte-order mark, or a tab before a
//     line's first character: line numbers or indentation could differ;
//   - an anchor, alias or merge key ('&', '*' or "<<" anywhere in the
//     block, comments included): entries would not stand alone;
//   - a line of the block, other than a comment, indented less than its
//     entries but not at column 0; an entry line starting with anything
//     but a key (see entryStart).
//
// The block ends at the first line at column 0 that is not blank or a
// comment. A split inside a quoted scalar or a flow collection leaves a
// part that does not parse on its own, which the caller treats as a
// fallback too.
func splitHosts(data []byte) (*hostsBlock, bool) {
	if !utf8.Valid(data) {
		return nil, false
	}
	if bytes.HasPrefix(data, []byte{0xef, 0xbb, 0xbf}) || bytes.HasPrefix(data, []byte{0xfe, 0xff}) || bytes.HasPrefix(data, []byte{0xff, 0xfe}) {
		return nil, false
	}
	for _, brk := range [][]byte{{0xc2, 0x85}, {0xe2, 0x80, 0xa8}, {0xe2, 0x80, 0xa9}} {
		if bytes.Contains(data, brk) {
			return nil, false
		}
	}
	b := &hostsBlock{data: data}
	bodyStart, bodyEnd := -1, len(data) // byte offsets of the block's lines
	indent := -1
	line := 0
	for off := 0; off < len(data); {
		line++
		eol := bytes.IndexByte(data[off:], '\n')
		next := len(data)
		if eol >= 0 {
			next = off + eol + 1
		}
		text := data[off:next]
		content := bytes.TrimRight(text, "\n")
		if i := bytes.IndexByte(content, '\r'); i >= 0 && i != len(content)-1 {
			return nil, false // a lone \r breaks a line in YAML
		}
		content = bytes.TrimSuffix(content, []byte("\r"))
		sp := 0
		for sp < len(content) && content[sp] == ' ' {
			sp++
		}
		first := bytes.TrimLeft(content, " \t")
		blank := len(first) == 0
		comment := !blank && first[0] == '#'
		if !blank && !comment && content[sp] == '\t' {
			return nil, false // a tab in the indentation
		}
		switch {
		case bodyStart < 0:
			if isHostsKey(content) {
				b.keyLine = line
				bodyStart = next
			}
		case blank || comment:
			// Belongs to the current entry (or precedes the first).
		case sp == 0:
			bodyEnd = off
			next = len(data) // the block has ended
		case indent < 0 || sp == indent:
			if indent < 0 {
				indent = sp
			}
			if !entryStart(content[sp]) {
				return nil, false
			}
			if n := len(b.entries); n > 0 {
				b.entries[n-1].end = off
			}
			b.entries = append(b.entries, chunk{line: line, start: off})
		case sp < indent:
			return nil, false
		}
		off = next
	}
	if bodyStart < 0 {
		return nil, false
	}
	if bodyEnd < bodyStart {
		bodyEnd = bodyStart
	}
	if n := len(b.entries); n > 0 {
		b.entries[n-1].end = bodyEnd
	}
	body := data[bodyStart:bodyEnd]
	if bytes.ContainsAny(body, "&*") || bytes.Contains(body, []byte("<<")) {
		return nil, false
	}
	// The rest of the file: the block's lines left empty, so that every
	// other line keeps its number.
	rest := make([]byte, 0, bodyStart+bytes.Count(body, []byte("\n"))+len(data)-bodyEnd)
	rest = append(rest, data[:bodyStart]...)
	rest = append(rest, bytes.Repeat([]byte("\n"), bytes.Count(body, []byte("\n")))...)
	if len(body) > 0 && body[len(body)-1] != '\n' {
		rest = append(rest, '\n') // the file ended inside the block
	}
	rest = append(rest, data[bodyEnd:]...)
	b.rest = rest
	return b, true
}

// isHostsKey reports whether a line is "hosts:" at column 0 with
// nothing after the colon but spaces and a comment.
func isHostsKey(line []byte) bool {
	after, ok := bytes.CutPrefix(line, []byte("hosts:"))
	if !ok {
		return false
	}
	rest := bytes.TrimLeft(after, " \t")
	// A comment needs white space before its '#'.
	return len(rest) == 0 || rest[0] == '#' && len(rest) < len(after)
}

// entriesPerParse is how many entries are parsed at a time: enough that
// yaml.v3's own set-up per parse (about 4 KB) does not dominate, few
// enough that their node tree stays small (about 2.7 KB an entry).
const entriesPerParse = 64

// parseEntries parses the entries cs, consecutive, on their own and
// returns their keys and values, with the file's line numbers; false
// when they do not parse, or not as a block mapping of one key per
// entry, each on its entry's first line.
func parseEntries(data []byte, cs []chunk) ([]yamlconf.Pair, bool) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data[cs[0].start:cs[len(cs)-1].end], &doc); err != nil {
		return nil, false
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, false
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode || root.Style&yaml.FlowStyle != 0 || len(root.Content) != 2*len(cs) || root.Line != 1 {
		return nil, false
	}
	pairs := make([]yamlconf.Pair, len(cs))
	for i, c := range cs {
		k, v := root.Content[2*i], root.Content[2*i+1]
		if k.Kind != yaml.ScalarNode || k.Line != c.line-cs[0].line+1 || k.ShortTag() == "!!merge" {
			return nil, false
		}
		pairs[i] = yamlconf.Pair{Key: k, Val: v}
	}
	shiftLines(root, cs[0].line-1)
	return pairs, true
}

// shiftLines adds by to the line of n and of every node under it (a tree
// without aliases).
func shiftLines(n *yaml.Node, by int) {
	n.Line += by
	for _, c := range n.Content {
		shiftLines(c, by)
	}
}
