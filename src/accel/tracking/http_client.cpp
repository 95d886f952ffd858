#include "accel/tracking/http_client.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>

#include "accel/util/check.h"
#include "accel/util/strings.h"

namespace accel {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::chrono::milliseconds kConnectTimeout{10000};

[[noreturn]] void unreachable(const HttpAddress& address, const std::string& why) {
  throw HttpUnreachable(str("no answer from ", address.uri, " (", address.host, ":", address.port, "): ", why));
}

// Closes the socket however the request ends.
struct Socket {
  int fd = -1;
  ~Socket() {
    if (fd >= 0) ::close(fd);
  }
};

int remaining_ms(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<long long>(left, 0, 1 << 30));
}

// Waits until `fd` is ready for `events`; false when the deadline passes.
bool wait_for(int fd, short events, Clock::time_point deadline) {
  while (true) {
    pollfd p{fd, events, 0};
    const int n = ::poll(&p, 1, remaining_ms(deadline));
    if (n > 0) return true;
    if (n == 0) return false;
    if (errno != EINTR) return false;
  }
}

void connect_to(Socket& socket, const HttpAddress& address, Clock::time_point deadline) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(address.port);
  if (const int rc = ::getaddrinfo(address.host.c_str(), port.c_str(), &hints, &found); rc != 0)
    unreachable(address, str("cannot resolve the host: ", ::gai_strerror(rc)));
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> list(found, ::freeaddrinfo);
  std::string last_error = "no address";
  for (const addrinfo* a = list.get(); a; a = a->ai_next) {
    Socket attempt;
    attempt.fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (attempt.fd < 0) {
      last_error = std::strerror(errno);
      continue;
    }
    int rc = ::connect(attempt.fd, a->ai_addr, a->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      if (!wait_for(attempt.fd, POLLOUT, std::min(deadline, Clock::now() + kConnectTimeout))) {
        last_error = "connecting timed out";
        continue;
      }
      int error = 0;
      socklen_t size = sizeof error;
      ::getsockopt(attempt.fd, SOL_SOCKET, SO_ERROR, &error, &size);
      rc = error == 0 ? 0 : -1;
      errno = error;
    }
    if (rc != 0) {
      last_error = std::strerror(errno);
      continue;
    }
    std::swap(socket.fd, attempt.fd);
    return;
  }
  unreachable(address, last_error);
}

void send_all(const Socket& socket, const HttpAddress& address, const std::string& data, Clock::time_point deadline) {
  for (size_t done = 0; done < data.size();) {
    const ssize_t n = ::send(socket.fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n > 0) {
      done += static_cast<size_t>(n);
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (!wait_for(socket.fd, POLLOUT, deadline)) unreachable(address, "sending timed out");
    } else {
      unreachable(address, str("sending failed: ", std::strerror(errno)));
    }
  }
}

std::string receive_all(const Socket& socket, const HttpAddress& address, Clock::time_point deadline) {
  std::string data;
  char buffer[16384];
  while (true) {
    const ssize_t n = ::recv(socket.fd, buffer, sizeof buffer, 0);
    if (n > 0) {
      data.append(buffer, static_cast<size_t>(n));
    } else if (n == 0) {
      return data;
    } else if (errno == EAGAIN || errno == EINTR) {
      if (!wait_for(socket.fd, POLLIN, deadline)) unreachable(address, "no answer within the timeout");
    } else {
      unreachable(address, str("receiving failed: ", std::strerror(errno)));
    }
  }
}

// The body of a chunked answer: hex size lines, each chunk, a 0 chunk.
std::string dechunk(const std::string& data, const HttpAddress& address) {
  std::string body;
  size_t at = 0;
  while (true) {
    const size_t line_end = data.find("\r\n", at);
    if (line_end == std::string::npos) unreachable(address, "the chunked answer ends early");
    size_t size = 0;
    try {
      size = std::stoul(data.substr(at, line_end - at), nullptr, 16);
    } catch (const std::exception&) {
      unreachable(address, "a chunk size is not a hex number");
    }
    at = line_end + 2;
    if (size == 0) return body;
    if (at + size > data.size()) unreachable(address, "the chunked answer ends early");
    body.append(data, at, size);
    at += size + 2;
  }
}

HttpResponse parse_response(const std::string& data, const HttpAddress& address) {
  const size_t head_end = data.find("\r\n\r\n");
  if (head_end == std::string::npos) unreachable(address, "the connection closed before a whole answer");
  HttpResponse response;
  const std::string head = data.substr(0, head_end);
  // "HTTP/1.1 200 OK"
  const size_t space = head.find(' ');
  if (head.rfind("HTTP/", 0) != 0 || space == std::string::npos)
    unreachable(address, str("the answer is not HTTP: \"", head.substr(0, 40), "\""));
  response.status = std::atoi(head.c_str() + space + 1);
  bool chunked = false;
  std::optional<size_t> length;
  for (size_t at = head.find("\r\n"); at != std::string::npos;) {
    const size_t next = head.find("\r\n", at + 2);
    const std::string line = head.substr(at + 2, next == std::string::npos ? std::string::npos : next - at - 2);
    at = next;
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    const std::string name = lower(line.substr(0, colon));
    const std::string value = lower(trim(line.substr(colon + 1)));
    if (name == "transfer-encoding" && value.find("chunked") != std::string::npos) chunked = true;
    if (name == "content-length") length = std::strtoul(value.c_str(), nullptr, 10);
  }
  const std::string rest = data.substr(head_end + 4);
  if (chunked) {
    response.body = dechunk(rest, address);
  } else if (length) {
    if (rest.size() < *length) unreachable(address, "the connection closed before the whole body");
    response.body = rest.substr(0, *length);
  } else {
    response.body = rest;
  }
  return response;
}

}  // namespace

HttpAddress parse_http_uri(const std::string& uri, const std::string& what) {
  const std::string scheme_end = "://";
  const size_t colon = uri.find(scheme_end);
  const std::string scheme = colon == std::string::npos ? "" : lower(uri.substr(0, colon));
  ACCEL_CHECK_ARG(scheme != "https", what, ": \"", uri,
                  "\" is https://, which accel's client does not speak (no TLS); expected an http:// address "
                  "(a server on this machine or a trusted network, or a local TLS-terminating proxy)");
  ACCEL_CHECK_ARG(scheme == "http", what, ": \"", uri, "\" is not an http:// address; expected http://host:port");
  HttpAddress address;
  address.uri = uri;
  const std::string rest = uri.substr(colon + scheme_end.size());
  const size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  if (slash != std::string::npos) address.prefix = rest.substr(slash);
  while (!address.prefix.empty() && address.prefix.back() == '/') address.prefix.pop_back();
  ACCEL_CHECK_ARG(authority.find('@') == std::string::npos, what, ": \"", uri,
                  "\" holds credentials; expected http://host:port (give them in the environment instead)");
  std::string port;
  if (!authority.empty() && authority[0] == '[') {
    const size_t close = authority.find(']');
    ACCEL_CHECK_ARG(close != std::string::npos, what, ": \"", uri, "\" has an unclosed '[' in its host");
    address.host = authority.substr(1, close - 1);
    if (close + 1 < authority.size() && authority[close + 1] == ':') port = authority.substr(close + 2);
  } else {
    const size_t port_colon = authority.rfind(':');
    address.host = authority.substr(0, port_colon);
    if (port_colon != std::string::npos) port = authority.substr(port_colon + 1);
  }
  ACCEL_CHECK_ARG(!address.host.empty(), what, ": \"", uri, "\" names no host; expected http://host:port");
  if (!port.empty()) {
    const bool digits =
        port.size() <= 5 && std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; });
    const long number = digits ? std::stol(port) : -1;
    ACCEL_CHECK_ARG(number >= 1 && number <= 65535, what, ": \"", uri, "\" has the port \"", port,
                    "\"; expected a number from 1 to 65535");
    address.port = static_cast<uint16_t>(number);
  }
  return address;
}

HttpResponse http_request(const HttpAddress& address, const std::string& method, const std::string& path,
                          const std::string& body, const HttpHeaders& headers, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  Socket socket;
  connect_to(socket, address, deadline);
  const bool v6 = address.host.find(':') != std::string::npos;
  std::string request = str(method, " ", address.prefix, path, " HTTP/1.1\r\nHost: ", v6 ? "[" : "", address.host,
                            v6 ? "]" : "", ":", address.port, "\r\nConnection: close\r\nAccept: application/json\r\n");
  for (const auto& [name, value] : headers) request += str(name, ": ", value, "\r\n");
  if (!body.empty() || method == "POST") request += str("Content-Length: ", body.size(), "\r\n");
  request += "\r\n";
  request += body;
  send_all(socket, address, request, deadline);
  return parse_response(receive_all(socket, address, deadline), address);
}

std::string url_encode(const std::string& text) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (const unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

}  // namespace accel
