#include "server/conn_watchdog.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdlib>
#include <set>
#include <vector>

namespace moe::server {

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// "ip:port" of a sockaddr, spelled as cpp-httplib spells remote_addr (numeric host).
std::string peer_key(const sockaddr_storage& a) {
  char host[INET6_ADDRSTRLEN] = {0};
  int port = 0;
  if (a.ss_family == AF_INET) {
    const auto* s = reinterpret_cast<const sockaddr_in*>(&a);
    inet_ntop(AF_INET, &s->sin_addr, host, sizeof host);
    port = ntohs(s->sin_port);
  } else if (a.ss_family == AF_INET6) {
    const auto* s = reinterpret_cast<const sockaddr_in6*>(&a);
    inet_ntop(AF_INET6, &s->sin6_addr, host, sizeof host);
    port = ntohs(s->sin6_port);
  } else {
    return "";
  }
  return std::string(host) + ":" + std::to_string(port);
}

int local_port(int fd) {
  sockaddr_storage a{};
  socklen_t len = sizeof a;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) return -1;
  if (a.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&a)->sin_port);
  if (a.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&a)->sin6_port);
  return -1;
}

}  // namespace

ConnWatchdog::ConnWatchdog(double deadline_s) : deadline_s_(deadline_s), thread_([this] { loop(); }) {}

ConnWatchdog::~ConnWatchdog() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void ConnWatchdog::set_port(int port) {
  std::lock_guard<std::mutex> lock(mu_);
  port_ = port;
}

void ConnWatchdog::request_read(const std::string& ip, int port) {
  std::lock_guard<std::mutex> lock(mu_);
  conns_[ip + ":" + std::to_string(port)].in_handler = true;
}

void ConnWatchdog::response_done(const std::string& ip, int port) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = conns_.find(ip + ":" + std::to_string(port));
  if (it == conns_.end()) return;
  it->second.in_handler = false;
  it->second.since = now_s();
}

int64_t ConnWatchdog::closed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return closed_;
}

void ConnWatchdog::loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, std::chrono::milliseconds(500));
    if (stop_ || port_ <= 0) continue;
    lock.unlock();
    tick(now_s());
    lock.lock();
  }
}

void ConnWatchdog::tick(double now) {
  DIR* d = opendir("/proc/self/fd");
  if (!d) return;
  std::set<std::string> seen;
  std::vector<std::pair<int, uint64_t>> expired;
  {
    std::lock_guard<std::mutex> lock(mu_);
    while (const dirent* e = readdir(d)) {
      char* end = nullptr;
      const long fd = std::strtol(e->d_name, &end, 10);
      if (end == e->d_name || *end != '\0' || fd == dirfd(d)) continue;
      struct stat st {};
      if (fstat(static_cast<int>(fd), &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
      if (local_port(static_cast<int>(fd)) != port_) continue;
      sockaddr_storage peer{};
      socklen_t len = sizeof peer;
      if (getpeername(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&peer), &len) != 0)
        continue;  // the listener
      const std::string key = peer_key(peer);
      if (key.empty()) continue;
      seen.insert(key);
      Conn& c = conns_[key];
      if (c.inode == 0) {  // first seen now, or registered by a handler before the first scan
        c.inode = st.st_ino;
        if (c.since == 0) c.since = now;
      } else if (c.inode != st.st_ino) {  // the peer address now belongs to a new connection
        c = Conn{now, false, static_cast<uint64_t>(st.st_ino)};
      }
      if (!c.in_handler && now - c.since > deadline_s_) expired.emplace_back(static_cast<int>(fd), st.st_ino);
    }
    for (auto it = conns_.begin(); it != conns_.end();)
      it = seen.count(it->first) ? std::next(it) : conns_.erase(it);
  }
  closedir(d);
  for (const auto& [fd, ino] : expired) {
    struct stat st {};
    if (fstat(fd, &st) == 0 && st.st_ino == ino && shutdown(fd, SHUT_RDWR) == 0) {
      std::lock_guard<std::mutex> lock(mu_);
      ++closed_;
    }
  }
}

}  // namespace moe::server
