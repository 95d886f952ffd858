// Fine-tune the GPT-2 example model with accel::Trainer: byte-level
// next-token prediction on text files the repository ships (each byte is a
// token, so no tokenizer is needed), with evaluation on a held-out file and
// its perplexity (exp of the mean eval loss). The same program runs alone
// or under `accel launch`; every flag but the example's own goes to
// TrainingArguments (Transformers' names):
//
//   ./build/accel launch --cpu --num_processes 2 ./build/examples/finetune
//       --train_file docs/trainer.md --eval_file docs/training.md
//       --output_dir out --max_steps 40 --eval_strategy steps --eval_steps 20 --save_steps 20
//   (one command line)
//
// The example's flags: --train_file, --eval_file (paths), --seq_len (tokens
// per window, default 64), --n_layer, --n_head, --n_embd (the model's size,
// default 2, 2, 64).
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "accel/accel.h"
#include "gpt2/model.h"

namespace {

// The file's bytes, as int64 tokens 0..255.
torch::Tensor bytes_of(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::invalid_argument("cannot read '" + path + "'");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.empty()) throw std::invalid_argument("'" + path + "' is empty");
  auto out = torch::empty({static_cast<int64_t>(text.size())}, torch::kInt64);
  auto* p = out.data_ptr<int64_t>();
  for (size_t i = 0; i < text.size(); ++i) p[i] = static_cast<unsigned char>(text[i]);
  return out;
}

// Consecutive windows of seq + 1 bytes: input_ids the first seq, labels
// the next token at each position.
std::shared_ptr<accel::Dataset<accel::TensorDict>> windows(const std::string& path, int64_t seq) {
  const auto tokens = bytes_of(path);
  const int64_t n = (tokens.numel() - 1) / seq;
  if (n < 1)
    throw std::invalid_argument("'" + path + "' has " + std::to_string(tokens.numel()) +
                                " bytes, fewer than --seq_len + 1");
  return std::make_shared<accel::LambdaDataset<accel::TensorDict>>(n, [tokens, seq](int64_t i) {
    return accel::TensorDict{{"input_ids", tokens.narrow(0, i * seq, seq)},
                             {"labels", tokens.narrow(0, i * seq + 1, seq)}};
  });
}

int64_t to_int(const std::string& flag, const std::string& v) {
  try {
    size_t used = 0;
    const int64_t x = std::stoll(v, &used);
    if (used == v.size() && x > 0) return x;
  } catch (const std::exception&) {
  }
  throw std::invalid_argument(flag + " '" + v + "', expected a positive integer");
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::map<std::string, std::string> own = {{"--train_file", ""}, {"--eval_file", ""}, {"--seq_len", "64"},
                                              {"--n_layer", "2"},   {"--n_head", "2"},   {"--n_embd", "64"}};
    std::vector<std::string> rest;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (own.count(a)) {
        if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
        own[a] = argv[++i];
      } else {
        rest.push_back(a);
      }
    }
    if (own["--train_file"].empty() || own["--eval_file"].empty())
      throw std::invalid_argument("--train_file and --eval_file are required");
    const auto args = accel::TrainingArguments::from_flags(rest);
    const int64_t seq = to_int("--seq_len", own["--seq_len"]);

    torch::manual_seed(static_cast<uint64_t>(args.seed()));  // the same initial weights on every process
    gpt2::GPT2 model(gpt2::GPT2Options()
                         .n_layer(to_int("--n_layer", own["--n_layer"]))
                         .n_head(to_int("--n_head", own["--n_head"]))
                         .n_embd(to_int("--n_embd", own["--n_embd"]))
                         .n_positions(seq)
                         .vocab_size(256));
    using Functions = accel::ModelFunctions<gpt2::GPT2>;
    auto functions = Functions()
                         .compute_loss([](Functions::Model& m, const accel::TensorDict& b) {
                           return m(b.at("input_ids"), b.at("labels"));  // the mean next-token cross-entropy
                         })
                         // --neftune_noise_alpha's noise goes onto the token embeddings.
                         .set_input_embeddings_hook([](gpt2::GPT2& m, accel::EmbeddingsHook hook) {
                           m->transformer->embeddings_hook = std::move(hook);
                         });
    accel::Trainer trainer(model, args, windows(own["--train_file"], seq), windows(own["--eval_file"], seq), functions);
    const auto before = trainer.evaluate();
    trainer.train();
    const auto after = trainer.evaluate();
    trainer.save_model();
    if (trainer.accelerator().is_main_process()) {
      std::printf("eval_loss %.4f -> %.4f, perplexity %.2f -> %.2f\n", before.at("eval_loss"), after.at("eval_loss"),
                  std::exp(before.at("eval_loss")), std::exp(after.at("eval_loss")));
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "finetune: error: %s\n", e.what());
    return 1;
  }
}
