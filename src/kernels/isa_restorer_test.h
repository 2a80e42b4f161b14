// Test helper: restores the active ISA when a test ends, whatever it forced.
#pragma once

#include "kernels/kernels.h"

namespace moe::kernels {

class IsaRestorer {
 public:
  IsaRestorer() : saved_(active_isa()) {}
  ~IsaRestorer() { force_isa(saved_); }
  IsaRestorer(const IsaRestorer&) = delete;
  IsaRestorer& operator=(const IsaRestorer&) = delete;

 private:
  Isa saved_;
};

}  // namespace moe::kernels
