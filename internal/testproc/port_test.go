package testproc

import (
	"net"
	"strconv"
	"testing"
)

func TestFreePort(t *testing.T) {
	seen := map[int]bool{}
	for range 20 {
		port := MustFreePort(t)
		if seen[port] {
			t.Fatalf("port %d handed out twice", port)
		}
		seen[port] = true
	}
	port := MustFreePort(t)
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatalf("port %d is not free: %v", port, err)
	}
	l.Close()
}
