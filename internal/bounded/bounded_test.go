package bounded

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"testing/iotest"
)

func TestReadAll(t *testing.T) {
	for _, size := range []int{0, 1, readChunk - 1, readChunk, readChunk + 1, 3*readChunk + 7} {
		data := bytes.Repeat([]byte{'x'}, size)
		for _, limit := range []int{size, size + 1, 2*size + readChunk} {
			got, err := ReadAll(bytes.NewReader(data), limit)
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("ReadAll(%d bytes, limit %d) = %d bytes, %v", size, limit, len(got), err)
			}
		}
		// The limit exact, with readers that return little at a time.
		for _, r := range []io.Reader{iotest.OneByteReader(bytes.NewReader(data)), iotest.DataErrReader(bytes.NewReader(data))} {
			if got, err := ReadAll(r, size); err != nil || !bytes.Equal(got, data) {
				t.Errorf("ReadAll(%d bytes, odd reader) = %d bytes, %v", size, len(got), err)
			}
		}
		if size == 0 {
			continue
		}
		_, err := ReadAll(bytes.NewReader(data), size-1)
		le, ok := errors.AsType[*LimitError](err)
		if !ok || le.Limit != size-1 {
			t.Errorf("ReadAll(%d bytes, limit %d) error = %v", size, size-1, err)
		}
	}
	_, err := ReadAll(strings.NewReader("12345"), 4)
	if err == nil || err.Error() != "larger than the 4 bytes allowed" {
		t.Errorf("error = %v", err)
	}
	boom := errors.New("boom")
	if _, err := ReadAll(iotest.TimeoutReader(strings.NewReader("12345")), 10); !errors.Is(err, iotest.ErrTimeout) {
		t.Errorf("reader error = %v", err)
	}
	if _, err := ReadAll(iotest.ErrReader(boom), 10); !errors.Is(err, boom) {
		t.Errorf("reader error = %v", err)
	}
}

func open(t *testing.T, name string) *os.File {
	t.Helper()
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestReadRegular(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "small")
	if err := os.WriteFile(small, []byte("12345"), 0o644); err != nil {
		t.Fatal(err)
	}
	if data, err := ReadRegular(open(t, small), "small", 5); err != nil || string(data) != "12345" {
		t.Errorf("limit exact: %q, %v", data, err)
	}
	if data, err := ReadRegular(open(t, small), "small", 6); err != nil || string(data) != "12345" {
		t.Errorf("limit above: %q, %v", data, err)
	}
	_, err := ReadRegular(open(t, small), "small", 4)
	if le, ok := errors.AsType[*LimitError](err); !ok || err.Error() != "small is 5 bytes, larger than the 4 allowed" || le.Size != 5 {
		t.Errorf("limit-1: %v", err)
	}
	if _, err := ReadRegular(open(t, dir), "dir", 10); err == nil || err.Error() != "dir is not a regular file" {
		t.Errorf("directory: %v", err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadRegular(open(t, fifo), "fifo", 10); err == nil || err.Error() != "fifo is not a regular file" {
		t.Errorf("fifo: %v", err)
	}
}

// TestReadRegularGrows: a file that grows past the limit after Stat is
// still refused.
func TestReadRegularGrows(t *testing.T) {
	name := filepath.Join(t.TempDir(), "grows")
	if err := os.WriteFile(name, []byte("1234"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := open(t, name)
	grow := func() {
		w, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		if _, err := w.WriteString("5678"); err != nil {
			t.Fatal(err)
		}
	}
	// Stat sees 4 bytes; the read sees 8.
	_, err := ReadRegular(&statThenGrow{File: f, grow: grow}, "grows", 5)
	if le, ok := errors.AsType[*LimitError](err); !ok || le.Size != -1 || err.Error() != "grows is larger than the 5 bytes allowed" {
		t.Errorf("grown file: %v", err)
	}
}

// statThenGrow is a file that grows once it has been Stat()ed.
type statThenGrow struct {
	*os.File
	grow func()
}

func (f *statThenGrow) Stat() (fs.FileInfo, error) {
	fi, err := f.File.Stat()
	f.grow()
	return fi, err
}
