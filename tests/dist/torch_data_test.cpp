// A torch::data pipeline (a Dataset with an example transform and Stack<>)
// prepared by the Accelerator trains exactly as accel's own loader over the
// same, already normalised, samples: 2 ranks over Gloo, shuffled, with an
// uneven last batch.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "accel/accelerator.h"
#include "accel/data/torch_data.h"
#include "support/distributed.h"

using namespace accel;
namespace F = torch::nn::functional;

namespace {

constexpr int64_t kRows = 37;  // 2 ranks x 4 rows: the last global batch is short

torch::Tensor all_x() { return torch::rand({kRows, 5}, at::detail::createCPUGenerator(21)); }
torch::Tensor all_y() { return torch::randint(0, 3, {kRows}, at::detail::createCPUGenerator(22)); }

// What a LibTorch team already has: examples one by one.
class Points : public torch::data::datasets::Dataset<Points> {
 public:
  Points() : x_(all_x()), y_(all_y()) {}
  torch::data::Example<> get(size_t i) override { return {x_[i], y_[i]}; }
  std::optional<size_t> size() const override { return kRows; }

 private:
  torch::Tensor x_, y_;
};

// Two epochs of Adam through the prepared model; `x` and `y` read a batch.
template <class Batch, class X, class Y>
std::vector<torch::Tensor> train(Accelerator& acc, DataLoader<Batch> data, X x, Y y, std::vector<int64_t>& rows) {
  accel::testing::seed_cpu(5);
  torch::nn::Linear net(5, 3);
  auto adam = std::make_shared<torch::optim::Adam>(net->parameters(), 0.05);
  auto [model, opt, loader] = acc.prepare(net, adam, data);
  for (int e = 0; e < 2; ++e)
    for (auto& b : loader) {
      acc.backward(F::cross_entropy(model(x(b)), y(b)));
      opt->step();
      opt->zero_grad();
      rows.push_back(x(b).size(0));
    }
  std::vector<torch::Tensor> out;
  for (auto& p : net->parameters()) out.push_back(p.detach().clone());
  return out;
}

}  // namespace

TEST(TorchData, PipelineTrainsLikeAccelsOwnLoader) {
  accel::testing::run_distributed(2, [] {
    const auto options = DataLoaderOptions(4).shuffle(true).seed(3);
    std::vector<int64_t> seen_got, seen_want;
    Accelerator acc;
    // An example-wise transform, then Stack<> to collate.
    auto normalize = torch::data::transforms::Lambda<torch::data::Example<>>([](torch::data::Example<> e) {
      e.data = (e.data - 0.5) / 0.25;
      return e;
    });
    auto pipeline = Points().map(normalize).map(torch::data::transforms::Stack<>());
    auto got = train(
        acc, make_data_loader(std::move(pipeline), options), [](const torch::data::Example<>& b) { return b.data; },
        [](const torch::data::Example<>& b) { return b.target; }, seen_got);
    auto ds = std::make_shared<TensorDataset>(TensorDict{{"x", (all_x() - 0.5) / 0.25}, {"y", all_y()}});
    auto want = train(
        acc, make_data_loader(ds, options), [](const TensorDict& b) { return b.at("x"); },
        [](const TensorDict& b) { return b.at("y"); }, seen_want);
    EXPECT_EQ(seen_got, seen_want);
    EXPECT_EQ(seen_got.size(), 10u);  // ceil(37 / 8) = 5 batches per epoch, evened out
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) EXPECT_TRUE(torch::allclose(got[i], want[i], 1e-6, 1e-7)) << i;
  });
}
