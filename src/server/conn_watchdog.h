// A deadline on reading a whole request, which cpp-httplib lacks (its read timeout applies to
// each read, so a client that sends one byte per timeout could hold a worker for hours). The
// watchdog looks at the process's connected sockets on the server's port once per tick; a
// connection that has been reading a request (or idling on keep-alive) for longer than the
// deadline is shut down, which ends the worker's read. Handlers mark when a request has been read
// and when its response is done, by peer address.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>

namespace moe::server {

class ConnWatchdog {
 public:
  // deadline_s: longest a connection may spend receiving a request (headers and body) or idle
  // between requests. port: the server's listening port (set later with set_port).
  explicit ConnWatchdog(double deadline_s);
  ~ConnWatchdog();
  ConnWatchdog(const ConnWatchdog&) = delete;
  ConnWatchdog& operator=(const ConnWatchdog&) = delete;

  void set_port(int port);
  // The request from peer (as cpp-httplib reports remote_addr, remote_port) has been read.
  void request_read(const std::string& ip, int port);
  // Its response has been written: the connection may now idle (keep-alive) until the deadline.
  void response_done(const std::string& ip, int port);
  int64_t closed() const;  // connections shut down so far

 private:
  struct Conn {
    double since = 0;  // start of the current reading / idle phase
    bool in_handler = false;
    uint64_t inode = 0;
  };
  void loop();
  void tick(double now);

  const double deadline_s_;
  int port_ = 0;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::map<std::string, Conn> conns_;  // by "ip:port" of the peer
  int64_t closed_ = 0;
  std::thread thread_;
};

}  // namespace moe::server
