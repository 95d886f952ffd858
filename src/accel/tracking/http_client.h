#pragma once
// A small HTTP/1.1 client over POSIX sockets, for trackers that talk to a
// server (MLflow's REST API). Plain http:// only: one request per
// connection (Connection: close), bodies sized by Content-Length or
// chunked. Private to the library.
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace accel {

/// Where an http:// URI points: "http://host:port/prefix".
struct HttpAddress {
  std::string uri;     // as given, for messages
  std::string host;    // a name or an address; [v6] without the brackets
  uint16_t port = 80;  // 80 when the URI names none
  std::string prefix;  // the URI's path without its trailing '/', "" for none
};

/// Parses `uri`; throws std::invalid_argument naming it and what was
/// expected for any other scheme (https:// included), a missing host or a
/// bad port. `what` starts the message ("MLFLOW_TRACKING_URI").
HttpAddress parse_http_uri(const std::string& uri, const std::string& what);

struct HttpResponse {
  int status = 0;
  std::string body;
};

/// The server could not be reached (no address, refused, timed out, the
/// connection dropped before a whole answer): not an answer of its own.
struct HttpUnreachable : std::runtime_error {
  using std::runtime_error::runtime_error;
};

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

/// Sends `method` `path` (after the address's prefix, starting with '/')
/// and returns the server's answer, whatever its status. Throws
/// HttpUnreachable naming the address when there is no answer within
/// `timeout` (connecting: at most 10 s of it).
HttpResponse http_request(const HttpAddress& address, const std::string& method, const std::string& path,
                          const std::string& body, const HttpHeaders& headers, std::chrono::milliseconds timeout);

/// `text` for a URL's query: unreserved bytes kept, every other one %XX.
std::string url_encode(const std::string& text);

}  // namespace accel
