// Shared by the --web.config.file tests: a scratch directory for configs,
// certificates and tokens, and bcrypt hashes made with libxcrypt.
#pragma once

#include <crypt.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace imdswatch::web_test {

// A fresh directory, removed with its content on destruction.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "imdswatch-web-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }
  // Writes `name` in place (same inode when it exists; directories created) and returns its path.
  std::string Write(const std::string& name, const std::string& text) const {
    std::filesystem::create_directories(std::filesystem::path(File(name)).parent_path());
    std::ofstream(File(name), std::ios::trunc) << text;
    return File(name);
  }
  // Replaces `name` by a new file renamed over it, as Kubernetes and cert-manager do.
  void Replace(const std::string& name, const std::string& text) const {
    Write(name + ".new", text);
    std::filesystem::rename(File(name + ".new"), File(name));
  }

 private:
  std::string path_;
};

// A bcrypt hash of password (cost 4: fast tests).
inline std::string Bcrypt(const std::string& password) {
  char setting[CRYPT_GENSALT_OUTPUT_SIZE];
  EXPECT_NE(crypt_gensalt_rn("$2b$", 4, nullptr, 0, setting, sizeof(setting)), nullptr);
  crypt_data data{};
  const char* hash = crypt_rn(password.c_str(), setting, &data, sizeof(data));
  EXPECT_TRUE(hash != nullptr && hash[0] == '$') << "libxcrypt cannot make bcrypt hashes";
  return hash ? hash : "";
}

}  // namespace imdswatch::web_test
