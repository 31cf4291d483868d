/*
 * A test peer for Gossamer's xDS interop tests; not product code.
 *
 * gRPC-Java's own proxyless xDS client (grpc-xds), nothing of Gossamer in it:
 *
 *   GRPC_XDS_BOOTSTRAP=bootstrap.json java -jar xds-client.jar \
 *       [--interval 0.01] [--timeout 5] [--max-seconds 300] [--csds-port 0] xds:///echo:50051
 *
 * Calls the unary method echo.Echo/Who (empty request, the answer is the server's name as
 * raw bytes) every --interval seconds and prints one JSON line per call, exactly like
 * tests/helpers/xds_echo_client.py:
 *   {"t": <unix seconds, call start>, "server": "<name>"}  or  {"t": ..., "error": "<CODE>: <description>"}
 * With --csds-port N > 0 it also serves Client Status Discovery (CSDS) on 127.0.0.1:N and
 * prints {"csds_port": N} first, so a test can see which xDS resources it holds, ACKED or
 * NACKED. Stops by itself after --max-seconds, and cleanly on SIGTERM.
 */
package gossamer.peers;

import io.grpc.CallOptions;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.InsecureServerCredentials;
import io.grpc.ManagedChannel;
import io.grpc.MethodDescriptor;
import io.grpc.Server;
import io.grpc.Status;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.grpc.stub.ClientCalls;
import io.grpc.xds.CsdsService;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.util.Locale;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

public final class XdsEchoClient {
  private static final MethodDescriptor.Marshaller<byte[]> BYTES =
      new MethodDescriptor.Marshaller<>() {
        @Override
        public InputStream stream(byte[] value) {
          return new ByteArrayInputStream(value);
        }

        @Override
        public byte[] parse(InputStream in) {
          try {
            return in.readAllBytes();
          } catch (IOException e) {
            throw Status.INTERNAL.withDescription("reading the response").withCause(e).asRuntimeException();
          }
        }
      };

  private static final MethodDescriptor<byte[], byte[]> WHO =
      MethodDescriptor.<byte[], byte[]>newBuilder()
          .setType(MethodDescriptor.MethodType.UNARY)
          .setFullMethodName("echo.Echo/Who")
          .setRequestMarshaller(BYTES)
          .setResponseMarshaller(BYTES)
          .build();

  private static final PrintStream OUT = System.out;
  private static volatile boolean stopping;

  public static void main(String[] args) throws Exception {
    double interval = 0.01, timeout = 5, maxSeconds = 300;
    int csdsPort = 0;
    String target = null;
    for (int i = 0; i < args.length; i++) {
      String a = args[i];
      if (a.startsWith("--") && i + 1 >= args.length) usage("missing value for " + a);
      switch (a) {
        case "--interval" -> interval = Double.parseDouble(args[++i]);
        case "--timeout" -> timeout = Double.parseDouble(args[++i]);
        case "--max-seconds" -> maxSeconds = Double.parseDouble(args[++i]);
        case "--csds-port" -> csdsPort = Integer.parseInt(args[++i]);
        default -> {
          if (a.startsWith("--") || target != null) usage("unexpected argument " + a);
          target = a;
        }
      }
    }
    if (target == null) usage("missing TARGET");

    Server csds = null;
    if (csdsPort > 0) {
      csds = NettyServerBuilder
          .forAddress(new InetSocketAddress("127.0.0.1", csdsPort), InsecureServerCredentials.create())
          .addService(CsdsService.newInstance())
          .build()
          .start();
      OUT.println("{\"csds_port\": " + csds.getPort() + "}");
      OUT.flush();
    }
    ManagedChannel channel = Grpc.newChannelBuilder(target, InsecureChannelCredentials.create()).build();

    Thread mainThread = Thread.currentThread();
    CountDownLatch done = new CountDownLatch(1);
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      stopping = true;
      if (done.getCount() > 0) {
        mainThread.interrupt(); // cancels a call in flight; the loop then ends without a line
        try {
          done.await(3, TimeUnit.SECONDS);
        } catch (InterruptedException ignored) {
          // shutting down anyway
        }
      }
      OUT.flush();
    }, "sigterm"));

    long timeoutNanos = (long) (timeout * 1e9);
    long sleepNanos = (long) (interval * 1e9);
    long end = System.nanoTime() + (long) (maxSeconds * 1e9);
    try {
      while (!stopping && System.nanoTime() < end) {
        Instant started = Instant.now();
        String line;
        try {
          byte[] reply = ClientCalls.blockingUnaryCall(
              channel, WHO, CallOptions.DEFAULT.withDeadlineAfter(timeoutNanos, TimeUnit.NANOSECONDS), new byte[0]);
          line = "\"server\": " + json(new String(reply, StandardCharsets.UTF_8));
        } catch (RuntimeException e) {
          Status status = Status.fromThrowable(e);
          String description = status.getDescription();
          if (description == null) description = status.getCause() == null ? "" : status.getCause().toString();
          line = "\"error\": " + json(status.getCode().name() + ": " + description);
        }
        if (stopping) break;
        OUT.println(String.format(Locale.ROOT, "{\"t\": %d.%06d, %s}", started.getEpochSecond(), started.getNano() / 1000, line));
        OUT.flush();
        try {
          TimeUnit.NANOSECONDS.sleep(sleepNanos);
        } catch (InterruptedException e) {
          break;
        }
      }
    } finally {
      Thread.interrupted(); // a SIGTERM's interrupt has done its job
      channel.shutdownNow();
      if (csds != null) csds.shutdownNow();
      try {
        channel.awaitTermination(1, TimeUnit.SECONDS);
      } finally {
        done.countDown();
      }
    }
    if (!stopping) System.exit(0);
  }

  /** A JSON string literal; like Python's json.dumps, everything outside printable ASCII is escaped. */
  static String json(String s) {
    StringBuilder b = new StringBuilder(s.length() + 2).append('"');
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      switch (c) {
        case '"' -> b.append("\\\"");
        case '\\' -> b.append("\\\\");
        case '\n' -> b.append("\\n");
        case '\r' -> b.append("\\r");
        case '\t' -> b.append("\\t");
        default -> {
          if (c < 0x20 || c > 0x7e) b.append(String.format(Locale.ROOT, "\\u%04x", (int) c));
          else b.append(c);
        }
      }
    }
    return b.append('"').toString();
  }

  private static void usage(String problem) {
    System.err.println("xds-client: " + problem + "\nusage: java -jar xds-client.jar [--interval 0.01]"
        + " [--timeout 5] [--max-seconds 300] [--csds-port 0] TARGET");
    System.exit(2);
  }
}
