// Command echo-server is a test peer for Gossamer's xDS interop tests, not product
// code: a plain (non-xDS) gRPC server that answers `/echo.Echo/Who` (any request
// bytes) with the bytes of --name, like tests/helpers/echo_servers.py.
//
//	echo-server --name NAME [--port 0] [--host 127.0.0.1]
//
// Once listening it prints `{"port": <bound port>}` on stdout; it stops on SIGTERM or
// SIGINT.
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
	"strconv"
	"syscall"

	"google.golang.org/grpc"

	"gossamer.test/peers/grpcgo/internal/rawcodec"
)

// echoService describes `echo.Echo` by hand: one unary method, raw bytes in and out.
func echoService(name string) *grpc.ServiceDesc {
	reply := []byte(name)
	return &grpc.ServiceDesc{
		ServiceName: "echo.Echo",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Who",
			Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				var request []byte
				if err := dec(&request); err != nil {
					return nil, err
				}
				return reply, nil
			},
		}},
	}
}

func main() {
	name := flag.String("name", "", "the name to answer with (required)")
	port := flag.Int("port", 0, "port to listen on; 0 picks a free one")
	host := flag.String("host", "127.0.0.1", "address to listen on")
	flag.Parse()
	if *name == "" || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}

	lis, err := net.Listen("tcp", net.JoinHostPort(*host, strconv.Itoa(*port)))
	if err != nil {
		log.Fatalf("echo-server: %v", err)
	}
	server := grpc.NewServer(grpc.ForceServerCodec(rawcodec.Codec{}))
	server.RegisterService(echoService(*name), nil)

	ready, _ := json.Marshal(map[string]int{"port": lis.Addr().(*net.TCPAddr).Port})
	fmt.Println(string(ready)) // os.Stdout is unbuffered: the line is out now

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, os.Interrupt)
	go func() {
		<-stop
		server.GracefulStop()
	}()
	if err := server.Serve(lis); err != nil {
		log.Fatalf("echo-server: %v", err)
	}
}
