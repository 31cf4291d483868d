// Command xds-client is a test peer for Gossamer's xDS interop tests, not product
// code: a proxyless gRPC-Go client that resolves its target through gRPC's own xDS
// resolver (bootstrap from GRPC_XDS_BOOTSTRAP) and calls `/echo.Echo/Who` in a loop.
//
//	xds-client [--interval 0.01] [--timeout 5] [--max-seconds 300] [--csds-port 0] TARGET
//
// For every call it prints one JSON line on stdout, as tests/helpers/xds_echo_client.py
// does: {"t": <call start, unix seconds>, "server": "<reply>"} or
// {"t": ..., "error": "<CODE_NAME>: <details>"}. With --csds-port N it also serves
// gRPC's Client Status Discovery Service on 127.0.0.1:N and first prints
// {"csds_port": N}. It stops after --max-seconds, or on SIGTERM or SIGINT.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	v3statusgrpc "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	_ "google.golang.org/grpc/xds" // registers the xds:/// resolver and balancers
	"google.golang.org/grpc/xds/csds"

	"gossamer.test/peers/grpcgo/internal/rawcodec"
)

// result is one output line; field order matches the Python client's.
type result struct {
	T      float64 `json:"t"`
	Server *string `json:"server,omitempty"`
	Error  *string `json:"error,omitempty"`
}

// codeName is gRPC's canonical upper-case name of a status code (codes.Code's
// String() is CamelCase and spells CANCELLED with one L).
func codeName(c codes.Code) string {
	if c == codes.Canceled {
		return "CANCELLED"
	}
	var b strings.Builder
	for i, r := range c.String() {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}

// serveCSDS serves the Client Status Discovery Service on 127.0.0.1:port.
func serveCSDS(port int) (*grpc.Server, error) {
	lis, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return nil, err
	}
	csdsServer, err := csds.NewClientStatusDiscoveryServer()
	if err != nil {
		lis.Close()
		return nil, err
	}
	server := grpc.NewServer()
	v3statusgrpc.RegisterClientStatusDiscoveryServiceServer(server, csdsServer)
	go server.Serve(lis)
	return server, nil
}

func main() {
	interval := flag.Float64("interval", 0.01, "seconds between calls")
	timeout := flag.Float64("timeout", 5, "per-call deadline in seconds")
	maxSeconds := flag.Float64("max-seconds", 300, "exit after this many seconds")
	csdsPort := flag.Int("csds-port", 0, "serve CSDS on 127.0.0.1:PORT (0: off)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: xds-client [flags] TARGET (e.g. xds:///echo:50051)")
		flag.PrintDefaults()
		os.Exit(2)
	}
	seconds := func(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, seconds(*maxSeconds))
	defer cancel()

	out := json.NewEncoder(os.Stdout) // one write per line; os.Stdout is unbuffered
	if *csdsPort > 0 {
		server, err := serveCSDS(*csdsPort)
		if err != nil {
			log.Fatalf("xds-client: csds: %v", err)
		}
		defer server.Stop()
		out.Encode(map[string]int{"csds_port": *csdsPort})
	}

	conn, err := grpc.NewClient(flag.Arg(0), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatalf("xds-client: %v", err)
	}
	defer conn.Close()

	for ctx.Err() == nil {
		started := time.Now()
		callCtx, callCancel := context.WithTimeout(ctx, seconds(*timeout))
		var reply []byte
		err := conn.Invoke(callCtx, "/echo.Echo/Who", []byte{}, &reply, grpc.ForceCodec(rawcodec.Codec{}))
		callCancel()
		if ctx.Err() != nil {
			break // stopping: this call was cut short by us, not by the mesh
		}
		line := result{T: float64(started.UnixNano()) / 1e9}
		if err == nil {
			server := string(reply)
			line.Server = &server
		} else {
			st := status.Convert(err)
			msg := codeName(st.Code()) + ": " + st.Message()
			line.Error = &msg
		}
		out.Encode(line)
		select {
		case <-ctx.Done():
		case <-time.After(seconds(*interval)):
		}
	}
}
