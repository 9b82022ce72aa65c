package wire

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// A bundle stream is how certpush hands a bundle to `certnode install
// --stdin` on the single command of an install: now push, with no upload:
//
//	certpush-bundle 1\n
//	<file name> <size>\n<size bytes>    (once per file, the manifest first)
//	end\n
//
// The reader refuses anything else: an unknown or repeated file, a size
// over the limit, a missing file, bytes after the end. Nothing is read
// beyond what the frames announce, so a reader never holds more than the
// files' limits allow.
const streamHeader = "certpush-bundle 1"

// maxStreamLine bounds a frame's header line ("<name> <size>").
const maxStreamLine = 128

// ErrStream wraps every error about a malformed bundle stream.
var ErrStream = errors.New("malformed bundle stream")

// File is one named file of a bundle stream.
type File struct {
	Name string
	Data []byte
}

// EncodeStream frames files, in the order given, as a bundle stream.
func EncodeStream(files []File) []byte {
	n := len(streamHeader) + len("\nend\n")
	for _, f := range files {
		n += len(f.Name) + 22 + len(f.Data)
	}
	b := make([]byte, 0, n)
	b = append(b, streamHeader+"\n"...)
	for _, f := range files {
		b = append(b, f.Name...)
		b = append(b, ' ')
		b = strconv.AppendInt(b, int64(len(f.Data)), 10)
		b = append(b, '\n')
		b = append(b, f.Data...)
	}
	return append(b, "end\n"...)
}

// DecodeStream reads a bundle stream from r: exactly the files in names,
// first one first, each at most maxFile bytes, then the end of the input.
// It returns the files by name.
func DecodeStream(r io.Reader, names []string, maxFile int) (map[string][]byte, error) {
	br := bufio.NewReaderSize(io.LimitReader(r, int64(len(names)*(maxFile+maxStreamLine)+2*maxStreamLine)), 4096)
	line, err := readLine(br)
	if err != nil {
		return nil, err
	}
	if line != streamHeader {
		return nil, fmt.Errorf("%w: it starts with %q, not %q", ErrStream, shorten(line), streamHeader)
	}
	files := make(map[string][]byte, len(names))
	for {
		line, err := readLine(br)
		if err != nil {
			return nil, err
		}
		if line == "end" {
			break
		}
		name, sizeText, ok := strings.Cut(line, " ")
		size, serr := strconv.Atoi(sizeText)
		switch {
		case !ok || serr != nil || size < 0:
			return nil, fmt.Errorf("%w: frame %q is not \"<file> <size>\"", ErrStream, shorten(line))
		case !slices.Contains(names, name):
			return nil, fmt.Errorf("%w: unexpected file %q", ErrStream, shorten(name))
		case len(files) == 0 && name != names[0]:
			return nil, fmt.Errorf("%w: %s must come first, not %s", ErrStream, names[0], name)
		case files[name] != nil:
			return nil, fmt.Errorf("%w: %s sent twice", ErrStream, name)
		case size > maxFile:
			return nil, fmt.Errorf("%w: %s is %d bytes, larger than the %d allowed", ErrStream, name, size, maxFile)
		}
		data := make([]byte, size)
		if _, err := io.ReadFull(br, data); err != nil {
			return nil, fmt.Errorf("%w: %s: %d bytes announced, the stream ended before them", ErrStream, name, size)
		}
		files[name] = data
	}
	for _, n := range names {
		if files[n] == nil {
			return nil, fmt.Errorf("%w: %s missing", ErrStream, n)
		}
	}
	if _, err := br.ReadByte(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the end line", ErrStream)
	}
	return files, nil
}

func readLine(br *bufio.Reader) (string, error) {
	line, err := br.ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull) || len(line) > maxStreamLine:
		return "", fmt.Errorf("%w: a frame line longer than %d bytes", ErrStream, maxStreamLine)
	case err == io.EOF && len(line) == 0:
		return "", fmt.Errorf("%w: the stream ended before its end line (nothing sent?)", ErrStream)
	case err != nil:
		return "", fmt.Errorf("%w: the stream ended inside a frame line", ErrStream)
	}
	return string(line[:len(line)-1]), nil
}

func shorten(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
