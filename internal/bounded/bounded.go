// Package bounded reads files and streams that must not be larger than a
// limit: the whole of the data or an error, with no more than about
// limit+1 bytes held in memory.
package bounded

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
)

// readChunk is the first read: a reader that answers one request per Read
// (an SFTP file) takes one request for data up to this size, and one more
// that says EOF.
const readChunk = 32 << 10

// LimitError says that data is larger than the limit allowed.
type LimitError struct {
	Name  string // the file; "" for ReadAll
	Size  int64  // the size Stat reported; -1 when the limit was passed while reading
	Limit int
}

func (e *LimitError) Error() string {
	switch {
	case e.Name == "":
		return fmt.Sprintf("larger than the %d bytes allowed", e.Limit)
	case e.Size >= 0:
		return fmt.Sprintf("%s is %d bytes, larger than the %d allowed", e.Name, e.Size, e.Limit)
	default:
		return fmt.Sprintf("%s is larger than the %d bytes allowed", e.Name, e.Limit)
	}
}

// ReadAll reads r to the end, refusing more than limit bytes with a
// *LimitError. The buffer starts at min(readChunk, limit+1) bytes and
// doubles, asking for no more than limit+1 (the allocator may round up).
func ReadAll(r io.Reader, limit int) ([]byte, error) {
	buf := make([]byte, 0, min(readChunk, limit+1))
	for {
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if len(buf) > limit {
			return nil, &LimitError{Size: -1, Limit: limit}
		}
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(cap(buf), limit+1-len(buf)))
		}
	}
}

// ReadRegular reads the open file f (an *os.File, say), named name in
// errors. It refuses a
// file that is not a regular file (a FIFO would block, a device never
// end) and one that Stat says is over limit bytes; the file may grow
// after Stat, so the read is bounded too. A file over the limit is a
// *LimitError.
func ReadRegular(f fs.File, name string, limit int) ([]byte, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", name)
	}
	if fi.Size() > int64(limit) {
		return nil, &LimitError{Name: name, Size: fi.Size(), Limit: limit}
	}
	data, err := ReadAll(f, limit)
	if le, ok := errors.AsType[*LimitError](err); ok {
		le.Name = name
	}
	return data, err
}
