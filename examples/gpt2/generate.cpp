#include "generate.h"

#include <functional>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "accel/util/check.h"

namespace gpt2 {

namespace {

// One forward: tokens [batch, T] -> logits [batch, T, vocab].
using Forward = std::function<torch::Tensor(const torch::Tensor&, KVCache*)>;

// Eval mode while generating; the caller's mode afterwards.
class EvalScope {
 public:
  explicit EvalScope(GPT2Impl& model) : model_(model), was_training_(model.is_training()) { model_.eval(); }
  ~EvalScope() { model_.train(was_training_); }
  EvalScope(const EvalScope&) = delete;
  EvalScope& operator=(const EvalScope&) = delete;

 private:
  GPT2Impl& model_;
  bool was_training_;
};

Generated run(GPT2Impl& model, const Forward& forward, const torch::Tensor& prompt, const GenerateOptions& o) {
  check(o, prompt, model.options());
  torch::NoGradGuard no_grad;
  EvalScope eval(model);
  auto generator = at::make_generator<at::CPUGeneratorImpl>(o.seed());
  const auto eos = o.eos_token_id();
  const int64_t pad = o.pad_token_id().value_or(eos.value_or(0));

  Generated out;
  KVCache cache(model.options().n_layer());
  torch::Tensor sequence = prompt;
  torch::Tensor input = prompt;  // what the next forward runs on
  torch::Tensor unfinished;      // [batch] bool, with an eos token
  if (eos) unfinished = torch::ones({prompt.size(0)}, prompt.options().dtype(torch::kBool));
  for (int64_t step = 0; step < o.max_new_tokens(); ++step) {
    auto logits = o.use_cache() ? forward(input, &cache) : forward(sequence, nullptr);
    // transformers takes the last position's logits in fp32.
    auto last = logits.select(1, -1).to(torch::kFloat);
    if (o.output_logits()) out.logits.push_back(last.clone());
    torch::Tensor next = o.do_sample() ? sample(filter_logits(last, o.sampling), generator) : last.argmax(-1);
    next = next.to(sequence.device());
    if (eos) {
      next = torch::where(unfinished, next, torch::full_like(next, pad));
      unfinished = unfinished.logical_and(next != *eos);
    }
    input = next.unsqueeze(1);
    sequence = torch::cat({sequence, input}, 1);
    if (eos && !unfinished.any().item<bool>()) break;
  }
  out.tokens = sequence;
  return out;
}

}  // namespace

void check(const GenerateOptions& o, const torch::Tensor& prompt, const GPT2Options& m) {
  ACCEL_CHECK_ARG(prompt.defined() && prompt.dim() == 2 && prompt.size(0) > 0 && prompt.size(1) > 0,
                  "generate: a prompt of shape ", prompt.defined() ? prompt.sizes() : torch::IntArrayRef{},
                  ", expected [batch, seq] with both at least 1");
  ACCEL_CHECK_ARG(prompt.scalar_type() == torch::kLong, "generate: prompt tokens of dtype ", prompt.scalar_type(),
                  ", expected int64");
  const int64_t low = prompt.min().item<int64_t>(), high = prompt.max().item<int64_t>();
  ACCEL_CHECK_ARG(low >= 0 && high < m.vocab_size(), "generate: prompt tokens from ", low, " to ", high,
                  ", expected in [0, ", m.vocab_size(), ") (the model's vocab_size)");
  ACCEL_CHECK_ARG(o.max_new_tokens() >= 1, "generate: max_new_tokens is ", o.max_new_tokens(), ", expected >= 1");
  ACCEL_CHECK_ARG(prompt.size(1) + o.max_new_tokens() <= m.n_positions(), "generate: max_new_tokens ",
                  o.max_new_tokens(), " after a prompt of ", prompt.size(1), " tokens makes ",
                  prompt.size(1) + o.max_new_tokens(), " positions, more than the model's n_positions ",
                  m.n_positions());
  for (const auto& [name, id] : {std::pair{"eos_token_id", o.eos_token_id()}, {"pad_token_id", o.pad_token_id()}})
    ACCEL_CHECK_ARG(!id || (*id >= 0 && *id < m.vocab_size()), "generate: ", name, " is ", id.value_or(0),
                    ", expected in [0, ", m.vocab_size(), ")");
  if (o.do_sample()) check(o.sampling);
}

Generated generate(GPT2& model, const torch::Tensor& prompt, const GenerateOptions& options) {
  const auto& wte = model->transformer->wte->weight;
  ACCEL_CHECK_ARG(!wte.is_meta(),
                  "generate: the token embedding is on the meta device (offloaded or never "
                  "loaded); wrap the model in an accel::Unit<gpt2::GPT2> and generate through that");
  const c10::Device device = wte.device();
  Forward forward = [&](const torch::Tensor& tokens, KVCache* cache) { return model->forward(tokens, {}, cache); };
  auto out = run(*model, forward, prompt.to(device), options);
  out.tokens = out.tokens.to(prompt.device());
  return out;
}

Generated generate(accel::Unit<GPT2>& model, const torch::Tensor& prompt, const GenerateOptions& options) {
  // The unit's hooks bring the model's tensors and the tokens to where it
  // runs and the logits back to the prompt's device.
  Forward forward = [&](const torch::Tensor& tokens, KVCache* cache) { return model(tokens, torch::Tensor(), cache); };
  return run(*model.module(), forward, prompt, options);
}

}  // namespace gpt2
